"""Attention microbenchmarks: ``python -m kernels.bench [--smoke] [--out DIR] [...]``.

Sweeps sequence length, head dim and causal at a fixed token count (batch x seq = ``--tokens``,
16k by default; heads = 2048 / head_dim, so every configuration does the same work per token)
over every implementation:

* ``xla`` / ``cudnn``: ``jax.nn.dot_product_attention(implementation=...)`` (cuDNN: GPU only);
* ``pallas`` / ``triton``: ``kernels/flash_attention`` (Pallas in interpret mode off-GPU, which
  only ``--smoke`` runs; Triton: GPU only);
* ``reference``: the plain-jnp reference.

For each it reports the median time (CUPTI device timer where ``jax.experimental.mosaic.gpu
.profiler`` works, else wall clock around ``block_until_ready``; compile excluded; >= 2 warm-up
calls because the first jitted Pallas call is traced twice), TFLOP/s (forward 4*B*H*Sq*Sk*D,
halved when causal; backward 2.5x forward, timed alone on saved residuals), the fraction of a
*measured* bf16 matmul peak on the same device, and peak memory from XLA's compiled memory
analysis. Output in ``--out``: ``bench.jsonl`` (one row per impl x config x pass, each with
device kind, versions and git SHA), ``bench.md`` (table) and ``bench.png`` (TFLOP/s vs
sequence length). ``--smoke`` runs tiny sizes on CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp

from kernels.timing import IMPLS, attention_fn, fwd_bwd, random_inputs, time_ms

__all__ = ["IMPLS", "attention_fn", "environment", "main", "run"]


def _git_sha() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    """Device kind, library versions and git SHA recorded in every JSONL row."""
    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for mod in ("jaxlib", "triton", "jax_triton"):
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "?")
        except Exception:  # not installed, or jax_triton refusing a CPU jax
            versions[mod] = None
    dev = jax.devices()[0]
    return {
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "device_count": jax.device_count(),
        "versions": versions,
        "git_sha": _git_sha(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _peak_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(
            m.argument_size_in_bytes
            + m.output_size_in_bytes
            + m.temp_size_in_bytes
            - m.alias_size_in_bytes
        )
    except Exception:  # not every backend implements memory_analysis
        return None


def matmul_peak_tflops(n: int, dtype: str, repeats: int) -> float:
    """Measured dense matmul TFLOP/s (n x n x n), the denominator of the % of peak column."""
    a, b = (jax.random.normal(jax.random.PRNGKey(i), (n, n), jnp.dtype(dtype)) for i in (1, 2))
    mm = jax.jit(lambda a, b: a @ b)
    ms = time_ms(mm, (a, b), repeats, 2)[0]
    return 2 * n**3 / (ms * 1e-3) / 1e12


def attention_flops(batch, heads, seq, d, causal) -> float:
    """Forward FLOPs 4*B*H*Sq*Sk*D, halved when causal (FA2's convention)."""
    return 4 * batch * heads * seq * seq * d * (0.5 if causal else 1.0)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What ``main`` measures (defaults: the full GPU sweep)."""

    impls: tuple[str, ...] = IMPLS
    seq_lens: tuple[int, ...] = (512, 1024, 2048, 4096, 8192, 16384)
    head_dims: tuple[int, ...] = (64, 128, 256)
    causal: tuple[bool, ...] = (False, True)
    tokens: int = 16384
    heads_x_dim: int = 2048
    dtype: str = "bfloat16"
    repeats: int = 20
    warmup: int = 3
    matmul_n: int = 8192
    fast_compile: bool = False
    """Compile at XLA backend optimisation level 0: only for smoke runs, whose CPU timings
    check the harness, not the kernels (halves Pallas interpret-mode compile time)."""


SMOKE = Sweep(
    impls=("xla", "pallas"),
    seq_lens=(32, 64),
    head_dims=(32,),
    causal=(True,),
    tokens=256,
    heads_x_dim=64,
    dtype="float32",
    repeats=3,
    warmup=2,
    matmul_n=256,
    fast_compile=True,
)


def run(sweep: Sweep, out_dir: str) -> list[dict]:
    """Run the sweep; write bench.jsonl, bench.md, bench.png under ``out_dir``; return rows."""
    os.makedirs(out_dir, exist_ok=True)
    env = environment()
    peak = matmul_peak_tflops(sweep.matmul_n, "bfloat16", sweep.repeats)
    print(f"{env['device_kind']}: measured bf16 matmul peak {peak:.2f} TFLOP/s", flush=True)
    rows = []
    path = os.path.join(out_dir, "bench.jsonl")
    with open(path, "w") as jsonl:
        for impl in sweep.impls:
            for d in sweep.head_dims:
                for seq in sweep.seq_lens:
                    for causal in sweep.causal:
                        for row in _measure(impl, d, seq, causal, sweep, peak, env):
                            rows.append(row)
                            jsonl.write(json.dumps(row) + "\n")
                            jsonl.flush()
                            print(_fmt(row), flush=True)
    write_table(rows, os.path.join(out_dir, "bench.md"))
    write_plot(rows, os.path.join(out_dir, "bench.png"))
    return rows


def _measure(impl, d, seq, causal, sweep: Sweep, peak, env):
    heads = max(1, sweep.heads_x_dim // d)
    batch = max(1, sweep.tokens // seq)
    base = dict(
        impl=impl,
        seq_len=seq,
        head_dim=d,
        causal=causal,
        batch=batch,
        heads=heads,
        dtype=sweep.dtype,
        matmul_peak_tflops=peak,
        **env,
    )
    try:
        f = attention_fn(impl, causal)
        q, k, v, do = random_inputs(batch, seq, heads, d, sweep.dtype)
        opts = {"xla_backend_optimization_level": 0} if sweep.fast_compile else None
        fwd = jax.jit(f).lower(q, k, v).compile(opts)
        both = jax.jit(fwd_bwd(f)).lower(q, k, v, do).compile(opts)
        # Backward alone: the vjp closure (residuals already computed) jitted on its own.
        # (jax.vjp under jit: eager vjp would run the forward op by op.)
        vjp_fn = jax.jit(lambda q, k, v: jax.vjp(f, q, k, v)[1])(q, k, v)
        bwd = jax.jit(lambda vjp_fn, do: vjp_fn(do)).lower(vjp_fn, do).compile(opts)
    except Exception as e:  # unavailable here, or fails to compile: record why, keep going
        return [dict(base, passes="all", status="skipped", reason=f"{type(e).__name__}: {e}"[:300])]
    t_f = time_ms(fwd, (q, k, v), sweep.repeats, sweep.warmup)
    t_b = time_ms(bwd, (vjp_fn, do), sweep.repeats, sweep.warmup)
    t_fb = time_ms(both, (q, k, v, do), sweep.repeats, sweep.warmup)
    flops = attention_flops(batch, heads, seq, d, causal)
    rows = []
    for passes, ms, fl, mem, timer, spread in (
        ("fwd", t_f[0], flops, _peak_bytes(fwd), t_f[3], t_f[1:3]),
        ("bwd", t_b[0], 2.5 * flops, _peak_bytes(bwd), t_b[3], t_b[1:3]),
        ("fwd+bwd", t_fb[0], 3.5 * flops, _peak_bytes(both), t_fb[3], t_fb[1:3]),
    ):
        tflops = fl / (ms * 1e-3) / 1e12
        rows.append(
            dict(
                base,
                passes=passes,
                status="ok",
                time_ms=ms,
                time_ms_p20_p80=list(spread),
                timer=timer,
                tflops=tflops,
                frac_of_matmul_peak=tflops / peak if peak > 0 else None,
                peak_bytes=mem,
            )
        )
    return rows


def _fmt(row) -> str:
    if row["status"] != "ok":
        return (
            f"{row['impl']:9s} S={row['seq_len']:<6d} D={row['head_dim']:<4d} skipped: "
            + (row["reason"][:80])
        )
    return (
        f"{row['impl']:9s} S={row['seq_len']:<6d} D={row['head_dim']:<4d} "
        f"causal={int(row['causal'])} {row['passes']:8s} {row['time_ms']:9.3f} ms "
        f"{row['tflops']:8.3f} TFLOP/s ({100 * row['frac_of_matmul_peak']:.1f}% of matmul)"
    )


def write_table(rows, path: str) -> None:
    """Markdown table of the ok rows (+ a list of skipped impls with their reasons)."""
    env = rows[0] if rows else {}
    lines = [
        f"# Attention microbenchmarks on {env.get('device_kind', '?')}",
        "",
        f"git {env.get('git_sha', '?')[:12]}, versions {json.dumps(env.get('versions', {}))}; "
        f"bf16 matmul peak measured at {env.get('matmul_peak_tflops', float('nan')):.2f} TFLOP/s.",
        "",
        "| impl | seq | D | causal | B x H | pass | median ms | TFLOP/s | % matmul peak "
        "| peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    skipped = {}
    for r in rows:
        if r["status"] != "ok":
            skipped.setdefault(r["impl"], r["reason"])
            continue
        mem = f"{r['peak_bytes'] / 2**20:.1f}" if r["peak_bytes"] else "-"
        lines.append(
            f"| {r['impl']} | {r['seq_len']} | {r['head_dim']} | {r['causal']} | "
            f"{r['batch']} x {r['heads']} | {r['passes']} | {r['time_ms']:.3f} | "
            f"{r['tflops']:.3f} | {100 * r['frac_of_matmul_peak']:.1f} | {mem} |"
        )
    if skipped:
        lines += ["", "Skipped:"] + [f"- {k}: {v}" for k, v in skipped.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_plot(rows, path: str) -> None:
    """TFLOP/s against sequence length, one panel per pass, one line per impl x D x causal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    passes = ("fwd", "bwd", "fwd+bwd")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), squeeze=False)
    for ax, p in zip(axes[0], passes):
        series = {}
        for r in ok:
            if r["passes"] == p:
                key = f"{r['impl']} D{r['head_dim']}{' causal' if r['causal'] else ''}"
                series.setdefault(key, []).append((r["seq_len"], r["tflops"]))
        for key, pts in sorted(series.items()):
            pts.sort()
            ax.plot([s for s, _ in pts], [t for _, t in pts], marker="o", label=key)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length")
        ax.set_ylabel("TFLOP/s")
        ax.set_title(p)
        ax.grid(alpha=0.3)
    if ok:
        axes[0][0].legend(fontsize=6)
        fig.suptitle(f"attention on {ok[0]['device_kind']} ({ok[0]['dtype']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    """CLI entry point; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes that run on CPU")
    p.add_argument("--out", default="runs/bench", help="output directory")
    p.add_argument("--impls", nargs="+", choices=IMPLS)
    p.add_argument("--seq-lens", nargs="+", type=int)
    p.add_argument("--head-dims", nargs="+", type=int)
    p.add_argument("--causal", nargs="+", choices=("true", "false"))
    p.add_argument("--tokens", type=int)
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--repeats", type=int)
    args = p.parse_args(argv)
    sweep = SMOKE if args.smoke else Sweep()
    overrides = {
        "impls": tuple(args.impls) if args.impls else None,
        "seq_lens": tuple(args.seq_lens) if args.seq_lens else None,
        "head_dims": tuple(args.head_dims) if args.head_dims else None,
        "causal": tuple(c == "true" for c in args.causal) if args.causal else None,
        "tokens": args.tokens,
        "dtype": args.dtype,
        "repeats": args.repeats,
    }
    sweep = dataclasses.replace(sweep, **{k: v for k, v in overrides.items() if v is not None})
    for s in sweep.seq_lens:
        if s < 16 or math.log2(s) % 1:
            p.error(f"--seq-lens: {s} is not a power of two >= 16")
    rows = run(sweep, args.out)
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(
        f"wrote {len(rows)} rows ({n_ok} measured) to {args.out}/bench.jsonl, bench.md, bench.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
