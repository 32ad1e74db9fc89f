"""Mixer scaling benchmark: forward+backward time and compiled memory versus sequence length.

    python -m jaxfm.nn.bench_mixers --smoke --out runs/bench        # CPU, about a minute
    python -m jaxfm.nn.bench_mixers --out runs/bench                # 1k..64k tokens (GPU)
    python -m jaxfm.nn.bench_mixers --dim 64 --repeats 3 --max_point_s 60 --out runs/bench
                                                                    # 1k..64k on a CPU

For each mixer and length L it jits ``grad(sum(mixer(x)^2))`` with respect to the
parameters and the input (batch ``--batch``, width ``--dim``; input and parameters cast to
``--dtype`` inside the loss, float32 parameters kept as the training engine keeps them, so a
bf16 run computes in bf16 and the fused attention kernels take it), compiles it once (compile
time and XLA's ``memory_analysis``: temporaries + arguments + outputs, the compiled peak),
warms up twice and reports the median of ``--repeats`` timed runs. A point that fails
(out of memory, say) is recorded with its error and the mixer skips longer lengths.

Memory comes from compilation alone, so every length gets its memory point; the timed runs
are skipped (``skipped`` says why) where the compiled peak exceeds ``--max_gb`` or where the
time extrapolated from the two previous lengths would make the point's warm-up and timed
runs exceed ``--max_point_s``. That lets a CPU draw the memory curves up to 64k tokens and
the time curves as far as it affords.

Mixers: ``attention-<impl>`` (the shared attention module through
``jaxfm.nn.attention.dot_product_attention``; fused impls on GPU only), ``mamba-chunked``,
``mamba-assoc``, ``mamba-linear`` (Mamba-1 with each selective-scan backend) and
``mamba2-ssd``. The log-log slope of time and memory over the longest lengths is printed
per mixer: about 1 for the scans and SSD, about 2 for attention once L dominates.

Output: ``OUT/bench_mixers.json`` with device, library versions, git SHA and one record per
(mixer, length), and the study folder ``--results_dir`` (default: ``--out``) with
command.txt (this command), config.json (the resolved options), results.json (the same
content as bench_mixers.json) and report.md (time per length, compiled peak at the first,
middle and last length, log-log slopes). ``--results_dir results/bench_mixers`` refreshes the
committed folder. Never collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfm.nn.mamba import Mamba
from jaxfm.nn.params import cast_floats, fp32_mask
from jaxfm.nn.ssd import Mamba2
from jaxfm.nn.transformer import MultiHeadAttention
from jaxfm.provenance import compiled_peak_bytes, git_sha, library_versions, write_study


def build(name: str, dim: int, heads: int, rngs: nnx.Rngs) -> nnx.Module:
    """The mixer called ``name`` (see the module docstring) at width ``dim``, causal."""
    if name.startswith("attention-"):
        return MultiHeadAttention(dim, heads, causal=True, impl=name.split("-", 1)[1], rngs=rngs)
    if name.startswith("mamba-"):
        return Mamba(dim, scan=name.split("-", 1)[1], chunk=64, rngs=rngs)
    if name == "mamba2-ssd":
        return Mamba2(dim, d_state=64, headdim=min(64, 2 * dim), chunk=64, rngs=rngs)
    raise ValueError(f"unknown mixer {name!r}")


def predicted_s(done: list[dict], length: int) -> float | None:
    """Time (s) of one call at ``length``, extrapolated on a log-log line through the two
    longest timed points (one point: assume quadratic growth, the worst case here)."""
    pts = [(r["length"], r["time_ms"] / 1e3) for r in done if r.get("time_ms")][-2:]
    if not pts:
        return None
    if len(pts) == 1:
        return pts[0][1] * (length / pts[0][0]) ** 2
    (l0, t0), (l1, t1) = pts
    k = max(np.log(t1 / t0) / np.log(l1 / l0), 1.0)
    return t1 * (length / l1) ** k


def grad_step(name: str, length: int, args):
    """``(step, params, x)``: the jitted ``grad(sum(mixer(x)^2))`` of mixer ``name`` at
    ``length`` tokens in ``args.dtype`` (parameters cast inside the loss), its float32
    parameters (a pure dict) and the input."""
    module = build(name, args.dim, args.heads, nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    keep, params = fp32_mask(state), nnx.to_pure_dict(state)
    x = jax.random.normal(jax.random.key(1), (args.batch, length, args.dim), args.dtype)

    def loss(params, x):
        y = nnx.merge(graphdef, cast_floats(params, args.dtype, keep))(x)
        return jnp.sum(jnp.square(y.astype(jnp.float32)))

    return jax.jit(jax.grad(loss, argnums=(0, 1))), params, x


def measure(name: str, length: int, args, done: list[dict] = ()) -> dict:
    """One (mixer, length) point: compile time, compiled memory, median step time (unless
    the point is over the memory or time budget, see the module docstring)."""
    step, params, x = grad_step(name, length, args)
    t0 = time.perf_counter()
    compiled = step.lower(params, x).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    peak = compiled_peak_bytes(compiled)
    record = dict(
        mixer=name,
        length=length,
        batch=args.batch,
        dim=args.dim,
        compile_s=compile_s,
        peak_bytes=peak,
        temp_bytes=None if mem is None else int(mem.temp_size_in_bytes),
    )
    guess = predicted_s(list(done), length)
    if peak is not None and peak > args.max_gb * 2**30:
        return {**record, "skipped": f"compiled peak {peak / 2**30:.1f} GiB > --max_gb"}
    if guess is not None and guess * (2 + args.repeats) > args.max_point_s:
        return {**record, "skipped": f"~{guess:.0f} s per call predicted > --max_point_s"}
    for _ in range(2):  # warm-up (the first Pallas call is traced again on its second use)
        jax.block_until_ready(compiled(params, x))
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - t0)
    return dict(
        record,
        time_ms=1e3 * statistics.median(times),
        time_min_ms=1e3 * min(times),
        tokens_per_s=args.batch * length / statistics.median(times),
    )


def slope(records: list[dict], key: str, last: int = 3) -> float | None:
    """Log-log slope of ``key`` over the ``last`` longest successful lengths."""
    pts = [(r["length"], r[key]) for r in records if r.get(key)][-last:]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def _length(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def _num(v: float | None, small: str = "{:.3g}") -> str:
    """Whole numbers from 100 up, ``small`` below ("-" for none)."""
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else small.format(v)


def report(out: dict, command: str) -> str:
    """report.md: fwd+bwd time at every length, compiled peak (MiB) at the first, middle and
    last length, and the log-log slopes, one row per mixer."""
    a = out["args"]
    lengths = list(a["lengths"])
    mem_at = sorted({lengths[0], lengths[len(lengths) // 2], lengths[-1]})
    by = {(r["mixer"], r["length"]): r for r in out["results"]}
    head = [f"{_length(lengths[0])} ms", *map(_length, lengths[1:])]
    head += [f"peak MB {_length(mem_at[0])}", *map(_length, mem_at[1:])]
    lines = [
        f"# Mixer benchmark, {out['backend'].upper()}"
        f"{' smoke' if a['smoke'] else ''}, {_length(lengths[0])}-{_length(lengths[-1])} tokens",
        "",
        f"Command: `{command}` (device {out['device_kind']}). fwd+bwd of each mixer, batch "
        f"{a['batch']}, dim {a['dim']}, {a['dtype']}; time = median of {a['repeats']} runs "
        'after 2 warm-ups (ms; "-": not timed, see results.json `skipped`/`error`); peak MB = '
        "XLA's compiled peak (MiB); slopes are log-log fits of time / memory against length "
        "over the longest lengths.",
        "",
        "| mixer | " + " | ".join(head) + " | slope time / memory |",
        "|" + "---|" * (len(head) + 2),
    ]
    for name in a["mixers"]:
        rec = lambda n, name=name: by.get((name, n), {})
        times = [_num(rec(n).get("time_ms")) for n in lengths]
        peaks = [
            _num(rec(n)["peak_bytes"] / 2**20, "{:.1f}") if rec(n).get("peak_bytes") else "-"
            for n in mem_at
        ]
        s = out["summary"].get(name, {})
        f2 = lambda v: "-" if v is None else f"{v:.2f}"
        slopes = f"{f2(s.get('time_slope'))} / {f2(s.get('memory_slope'))}"
        lines.append(f"| {name} | " + " | ".join(times + peaks) + f" | {slopes} |")
    return "\n".join(lines) + "\n"


def _host_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 16.0


def main(argv: list[str] | None = None) -> dict:
    """Parses flags, runs the sweep, prints a table and writes the JSON file."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="short CPU sweep (256..2048 tokens)")
    p.add_argument("--out", default="runs/bench", help="output directory")
    p.add_argument(
        "--results_dir",
        default=None,
        help="study folder (command.txt, config.json, results.json, report.md; default --out)",
    )
    p.add_argument("--lengths", type=int, nargs="*", help="sequence lengths")
    p.add_argument("--mixers", nargs="*", help="mixer names (default: all available)")
    p.add_argument("--dim", type=int, default=None, help="model width (smoke 64, full 256)")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (smoke 3, full 10)")
    p.add_argument(
        "--max_gb",
        type=float,
        default=0.6 * _host_gb(),
        help="run a point only if its compiled peak fits (default 60%% of host RAM)",
    )
    p.add_argument(
        "--max_point_s",
        type=float,
        default=600.0,
        help="skip timing a point whose warm-up + timed runs are predicted to take longer",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype: input and parameters cast to it in the loss (Fp32Param kept)",
    )
    args = p.parse_args(argv)
    gpu = jax.default_backend() == "gpu"
    args.dim = args.dim or (64 if args.smoke else 256)
    args.repeats = args.repeats or (3 if args.smoke else 10)
    args.lengths = args.lengths or (
        [256, 512, 1024, 2048] if args.smoke else [1024 * 2**i for i in range(7)]
    )
    args.dtype = getattr(jnp, args.dtype)
    fused = ["attention-cudnn", "attention-pallas", "attention-mosaic"]
    default = ["attention-xla"] + (fused if gpu else [])
    default += ["mamba-chunked", "mamba-assoc", "mamba2-ssd"]
    args.mixers = args.mixers or default

    records = []
    print(f"device {jax.devices()[0].device_kind}, dim {args.dim}, batch {args.batch}")
    print(f"{'mixer':18s} {'L':>7s} {'ms':>10s} {'peak MB':>9s} {'compile s':>9s}")
    for name in args.mixers:
        for length in args.lengths:
            try:
                r = measure(name, length, args, [q for q in records if q["mixer"] == name])
            except Exception as e:  # noqa: BLE001 - OOM or unsupported impl: record, move on
                msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                records.append(dict(mixer=name, length=length, error=msg))
                print(f"{name:18s} {length:7d} failed: {msg}")
                break
            records.append(r)
            mb = "-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:.1f}"
            ms = f"{r['time_ms']:10.2f}" if "time_ms" in r else f"{'-':>10s}"
            note = f"  (time skipped: {r['skipped']})" if "skipped" in r else ""
            print(f"{name:18s} {length:7d} {ms} {mb:>9s} {r['compile_s']:9.2f}{note}")
            sys.stdout.flush()

    summary = {}
    for name in args.mixers:
        ok = [r for r in records if r["mixer"] == name and "error" not in r]
        summary[name] = dict(time_slope=slope(ok, "time_ms"), memory_slope=slope(ok, "peak_bytes"))
        ts, ms = summary[name]["time_slope"], summary[name]["memory_slope"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"
        print(
            f"{name:18s} log-log slope over the longest lengths: time {fmt(ts)}, memory {fmt(ms)}"
        )
    out = dict(
        bench="mixers",
        device=str(jax.devices()[0]),
        device_kind=jax.devices()[0].device_kind,
        backend=jax.default_backend(),
        versions=library_versions(),
        git_sha=git_sha(),
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        host_cpus=os.cpu_count(),
        args=dict(
            smoke=args.smoke,
            lengths=args.lengths,
            mixers=args.mixers,
            dim=args.dim,
            heads=args.heads,
            batch=args.batch,
            repeats=args.repeats,
            max_gb=args.max_gb,
            max_point_s=args.max_point_s,
            dtype=jnp.dtype(args.dtype).name,
        ),
        summary=summary,
        results=records,
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bench_mixers.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "jaxfm.nn.bench_mixers", *given])
    study = args.results_dir or args.out
    text = report(out, command)
    write_study(study, command=command, config=out["args"], results=out, report=text)
    print(f"wrote {path}, study in {study}")
    return out


if __name__ == "__main__":
    main()
