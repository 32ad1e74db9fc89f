"""Attention microbenchmarks: ``python -m kernels.bench [--smoke] [--out DIR] [...]``.

Sweeps sequence length, head dim and causal at a fixed token count (batch x seq = ``--tokens``,
16k by default; heads = 2048 / head_dim, so every configuration does the same work per token)
over every implementation:

* ``xla`` / ``cudnn``: ``jax.nn.dot_product_attention(implementation=...)`` (cuDNN: GPU only);
* ``pallas`` / ``mosaic`` / ``triton``: ``kernels/flash_attention`` (Pallas and Mosaic GPU in
  interpret mode off-GPU, which only ``--smoke`` runs; Mosaic GPU: Hopper and newer, bf16/fp16,
  head dims 64/128, a skipped row otherwise; Triton: GPU only);
* ``reference``: the plain-jnp reference.

For each it reports the median time and its p20-p80 spread (CUPTI device timer where
``jax.experimental.mosaic.gpu.profiler`` works, else wall clock around ``block_until_ready``;
compile excluded; >= 2 warm-up calls because the first jitted Pallas call is traced twice), the
speed-up over xla on the same configuration (xla's median / this one's), TFLOP/s (forward
4*B*H*Sq*Sk*D, halved when causal; backward 2.5x forward, timed alone on saved residuals), the
fraction of a *measured* bf16 matmul peak on the same device, and peak memory from XLA's
compiled memory analysis. Every row's ``mode`` is ``compiled``, or ``interpret`` for Pallas or
Mosaic GPU off a GPU (an interpreter: such timings measure the interpreter, not the kernel). A
pass that fails to compile or to run (out of memory, say) is recorded as ``skipped`` with the
reason and the sweep goes on. Output in ``--out``: ``bench.jsonl`` (one row per impl x config x
pass, each with device kind, versions and git SHA), ``bench.md`` (table) and ``bench.png``
(TFLOP/s vs sequence length). ``--smoke`` runs tiny sizes on CPU in well under a minute.
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

from kernels.timing import (
    IMPLS,
    attention_fn,
    execution_mode,
    fwd_bwd,
    random_inputs,
    time_ms,
)

__all__ = ["IMPLS", "attention_fn", "environment", "execution_mode", "main", "run"]


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


def _ordered(impls) -> tuple[str, ...]:
    """``impls`` with ``xla`` first, so every row can be compared with xla as it is written."""
    return tuple(sorted(impls, key=lambda i: i != "xla"))


def _key(row) -> tuple:
    """What a row is compared with xla on: same shape, pass and dtype."""
    return (row["seq_len"], row["head_dim"], row["causal"], row["passes"], row["dtype"])


def run(sweep: Sweep, out_dir: str) -> list[dict]:
    """Run the sweep; write bench.jsonl, bench.md, bench.png under ``out_dir``; return rows.

    A configuration that fails to compile or to run (out of memory, say) becomes a
    ``status="skipped"`` row with the reason; the sweep carries on.
    """
    os.makedirs(out_dir, exist_ok=True)
    env = environment()
    peak = matmul_peak_tflops(sweep.matmul_n, "bfloat16", sweep.repeats)
    print(f"{env['device_kind']}: measured bf16 matmul peak {peak:.2f} TFLOP/s", flush=True)
    rows = []
    xla_ms = {}  # _key(row) -> xla's median ms
    path = os.path.join(out_dir, "bench.jsonl")
    with open(path, "w") as jsonl:
        for impl in _ordered(sweep.impls):
            for d in sweep.head_dims:
                for seq in sweep.seq_lens:
                    for causal in sweep.causal:
                        for row in _measure(impl, d, seq, causal, sweep, peak, env):
                            row["speedup_vs_xla"] = None
                            if row["status"] == "ok":
                                if impl == "xla":
                                    xla_ms[_key(row)] = row["time_ms"]
                                if ref := xla_ms.get(_key(row)):
                                    row["speedup_vs_xla"] = ref / row["time_ms"]
                            rows.append(row)
                            jsonl.write(json.dumps(row) + "\n")
                            jsonl.flush()
                            print(_fmt(row), flush=True)
    write_table(rows, os.path.join(out_dir, "bench.md"))
    write_plot(rows, os.path.join(out_dir, "bench.png"))
    return rows


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def _measure(impl, d, seq, causal, sweep: Sweep, peak, env):
    heads = max(1, sweep.heads_x_dim // d)
    batch = max(1, sweep.tokens // seq)
    base = dict(
        impl=impl,
        mode=execution_mode(impl),
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
    except Exception as e:  # unavailable here: record why, keep going
        return [dict(base, passes="all", status="skipped", reason=_reason(e))]
    opts = {"xla_backend_optimization_level": 0} if sweep.fast_compile else None

    def build(passes):
        if passes == "fwd":
            return jax.jit(f).lower(q, k, v).compile(opts), (q, k, v)
        if passes == "fwd+bwd":
            return jax.jit(fwd_bwd(f)).lower(q, k, v, do).compile(opts), (q, k, v, do)
        # Backward alone: the vjp closure (residuals already computed) jitted on its own.
        # (jax.vjp under jit: eager vjp would run the forward op by op.)
        vjp_fn = jax.jit(lambda q, k, v: jax.vjp(f, q, k, v)[1])(q, k, v)
        return jax.jit(lambda vjp_fn, do: vjp_fn(do)).lower(vjp_fn, do).compile(opts), (vjp_fn, do)

    flops = attention_flops(batch, heads, seq, d, causal)
    rows = []
    for passes, fl in (("fwd", flops), ("bwd", 2.5 * flops), ("fwd+bwd", 3.5 * flops)):
        # Compile and time each pass on its own: one that fails (fails to compile, runs out
        # of memory) is recorded as skipped and the others are still measured.
        try:
            compiled, args = build(passes)
            ms, p20, p80, timer = time_ms(compiled, args, sweep.repeats, sweep.warmup)
            mem = _peak_bytes(compiled)
        except Exception as e:
            rows.append(dict(base, passes=passes, status="skipped", reason=_reason(e)))
            continue
        finally:
            compiled = args = None  # free the buffers before the next pass
        tflops = fl / (ms * 1e-3) / 1e12
        rows.append(
            dict(
                base,
                passes=passes,
                status="ok",
                time_ms=ms,
                time_ms_p20_p80=[p20, p80],
                timer=timer,
                tflops=tflops,
                frac_of_matmul_peak=tflops / peak if peak > 0 else None,
                peak_bytes=mem,
            )
        )
    return rows


def _speedup(row) -> str:
    x = row.get("speedup_vs_xla")
    return "-" if x is None else f"{x:.2f}"


def _fmt(row) -> str:
    head = (
        f"{row['impl']:9s} {row['mode']:9s} {row['dtype']:8s} S={row['seq_len']:<6d} "
        f"D={row['head_dim']:<4d} causal={int(row['causal'])} {row['passes']:8s}"
    )
    if row["status"] != "ok":
        return f"{head} skipped: {row['reason'][:80]}"
    p20, p80 = row["time_ms_p20_p80"]
    frac = row["frac_of_matmul_peak"]
    return (
        f"{head} {row['time_ms']:9.3f} ms [{p20:.3f}-{p80:.3f}] "
        f"{row['tflops']:8.3f} TFLOP/s "
        f"({'-' if frac is None else f'{100 * frac:.1f}%'} of matmul) "
        f"{_speedup(row)}x xla"
    )


def _configs(rows) -> str:
    return "; ".join(
        f"S={r['seq_len']} D={r['head_dim']} causal={r['causal']} {r['passes']}" for r in rows
    )


def write_table(rows, path: str) -> None:
    """Markdown table of the ok rows (+ the skipped ones, grouped by impl and reason)."""
    env = rows[0] if rows else {}
    lines = [
        f"# Attention microbenchmarks on {env.get('device_kind', '?')}",
        "",
        f"git {env.get('git_sha', '?')[:12]}, versions {json.dumps(env.get('versions', {}))}; "
        f"bf16 matmul peak measured at {env.get('matmul_peak_tflops', float('nan')):.2f} TFLOP/s.",
        "",
        "`p20–p80 ms`: the spread of the timed calls; `vs xla`: xla's median time / this row's "
        "for the same seq, D, causal, pass and dtype (> 1: faster than xla; `-`: no xla row).",
    ]
    if any(r.get("mode") == "interpret" for r in rows):
        lines += [
            "",
            "**Rows in `interpret` mode ran the Pallas interpreter (no GPU): their timings "
            "measure the interpreter, not the kernel.**",
        ]
    lines += [
        "",
        "| impl | mode | dtype | seq | D | causal | B x H | pass | median ms | p20–p80 ms "
        "| vs xla | TFLOP/s | % matmul peak | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    skipped = {}
    for r in rows:
        if r["status"] != "ok":
            skipped.setdefault((r["impl"], r["reason"]), []).append(r)
            continue
        mem = f"{r['peak_bytes'] / 2**20:.1f}" if r["peak_bytes"] else "-"
        frac = r["frac_of_matmul_peak"]
        p20, p80 = r["time_ms_p20_p80"]
        lines.append(
            f"| {r['impl']} | {r['mode']} | {r['dtype']} | {r['seq_len']} | {r['head_dim']} | "
            f"{r['causal']} | {r['batch']} x {r['heads']} | {r['passes']} | {r['time_ms']:.3f} | "
            f"{p20:.3f}–{p80:.3f} | {_speedup(r)} | {r['tflops']:.3f} | "
            f"{'-' if frac is None else f'{100 * frac:.1f}'} | {mem} |"
        )
    if skipped:
        lines += ["", "Skipped:"] + [
            f"- {impl}: {reason} ({_configs(rs)})" for (impl, reason), rs in skipped.items()
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def _impl_label(impl: str, mode: str) -> str:
    return f"{impl} (interpret)" if mode == "interpret" else impl


def write_plot(rows, path: str) -> None:
    """TFLOP/s against sequence length, one panel per pass, one line per impl x D x causal.

    One colour per impl; one line style per head dim, with round markers when not causal and
    hollow squares when causal. Two legends below the panels (colours: impls; styles: D and
    causal); y on a log scale in a panel whose values span more than 10x.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator, ScalarFormatter

    ok = [r for r in rows if r["status"] == "ok"]
    impls = list(dict.fromkeys((r["impl"], r["mode"]) for r in ok))
    colours = {impl: f"C{i % 10}" for i, impl in enumerate(impls)}
    dims = sorted({r["head_dim"] for r in ok})
    styles = {d: _LINESTYLES[i % len(_LINESTYLES)] for i, d in enumerate(dims)}

    def marker(causal):
        return dict(marker="s", markerfacecolor="none") if causal else dict(marker="o")

    passes = ("fwd", "bwd", "fwd+bwd")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), squeeze=False)
    for ax, p in zip(axes[0], passes):
        series = {}
        for r in ok:
            if r["passes"] == p:
                key = ((r["impl"], r["mode"]), r["head_dim"], r["causal"])
                series.setdefault(key, []).append((r["seq_len"], r["tflops"]))
        values = [t for pts in series.values() for _, t in pts if t > 0]
        for (impl, d, causal), pts in sorted(series.items()):
            pts.sort()
            ax.plot(
                [s for s, _ in pts],
                [t for _, t in pts],
                color=colours[impl],
                linestyle=styles[d],
                **marker(causal),
            )
        ax.set_xscale("log", base=2)
        seqs = sorted({r["seq_len"] for r in ok if r["passes"] == p})
        if seqs:
            ax.set_xticks(seqs)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
        if values and max(values) > 10 * min(values):
            ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("throughput (TFLOP/s)")
        ax.set_title(p)
        ax.grid(alpha=0.3, which="both")
    if ok:
        tokens = {r["batch"] * r["seq_len"] for r in ok}
        fig.suptitle(
            f"attention on {ok[0]['device_kind']} ({ok[0]['dtype']})"
            + (f", {tokens.pop()} tokens per call" if len(tokens) == 1 else "")
        )
    fig.tight_layout()
    if ok:
        # Below the panels, never over a line; bbox_inches="tight" keeps them in the file.
        impl_handles = [Line2D([], [], color=colours[i], lw=2) for i in impls]
        shapes = sorted({(r["head_dim"], r["causal"]) for r in ok})
        shape_handles = [
            Line2D([], [], color="0.3", linestyle=styles[d], **marker(c)) for d, c in shapes
        ]
        kw = dict(loc="upper center", fontsize=8, frameon=False)
        first = fig.legend(
            impl_handles,
            [_impl_label(*i) for i in impls],
            bbox_to_anchor=(0.3, 0.0),
            ncol=min(3, len(impls)),
            title="impl (colour)",
            **kw,
        )
        fig.add_artist(first)
        fig.legend(
            shape_handles,
            [f"D={d}{' causal' if c else ''}" for d, c in shapes],
            bbox_to_anchor=(0.7, 0.0),
            ncol=min(3, len(shapes)),
            title="head dim, causal (line style, marker)",
            **kw,
        )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _defaults(field: str, fmt=str) -> str:
    """ "default: <full sweep> (smoke: <--smoke>)" for a ``Sweep`` field."""

    def show(sweep):
        v = getattr(sweep, field)
        return " ".join(fmt(x) for x in v) if isinstance(v, tuple) else fmt(v)

    full, smoke = show(Sweep()), show(SMOKE)
    return f"default: {full}" + ("" if smoke == full else f" (smoke: {smoke})")


def main(argv=None) -> int:
    """CLI entry point; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes that run on CPU in well under a minute (the '(smoke: ...)' defaults "
        "below); default: off, the full GPU sweep",
    )
    p.add_argument("--out", default="runs/bench", help="output directory; default: runs/bench")
    p.add_argument(
        "--impls",
        nargs="+",
        choices=IMPLS,
        metavar="IMPL",
        help=f"implementations to time, of {' '.join(IMPLS)} (xla is always timed first: the "
        f"'vs xla' column compares with it); {_defaults('impls')}",
    )
    p.add_argument(
        "--seq-lens",
        nargs="+",
        type=int,
        metavar="S",
        help=f"sequence lengths, powers of two >= 16; {_defaults('seq_lens')}",
    )
    p.add_argument(
        "--head-dims", nargs="+", type=int, metavar="D", help=f"head dims; {_defaults('head_dims')}"
    )
    p.add_argument(
        "--causal",
        nargs="+",
        choices=("true", "false"),
        help=f"causal masking on/off; {_defaults('causal', lambda c: str(c).lower())}",
    )
    p.add_argument(
        "--tokens",
        type=int,
        help=f"batch x seq, fixed across the sweep; {_defaults('tokens')}",
    )
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        help=f"q/k/v dtype; {_defaults('dtype')}",
    )
    p.add_argument(
        "--repeats", type=int, help=f"timed calls per measurement; {_defaults('repeats')}"
    )
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
    for d in sweep.head_dims:
        if d < 1:
            p.error(f"--head-dims: {d} is not a positive integer")
    if sweep.tokens < 1:
        p.error(f"--tokens: {sweep.tokens} is not a positive integer")
    if sweep.repeats < 1:
        p.error(f"--repeats: {sweep.repeats} is not a positive integer")
    rows = run(sweep, args.out)
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(
        f"wrote {len(rows)} rows ({n_ok} measured) to {args.out}/bench.jsonl, bench.md, bench.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
