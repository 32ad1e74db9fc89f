"""``make gpu-check``: the one prepared run for a machine with a CUDA GPU, in parts that each
have their own time limit, results written as they come.

A GPU is lent for minutes, starting included, so nothing here explores: each part is one
command with a timeout sized to fit about 8 minutes in all on one H100/H200, and a part that
fails or runs out of time is recorded and the next one starts. After every part
``OUT/summary.json`` (device, versions, each part's command, exit status, wall time, timeout,
artifacts) and ``OUT/RESULTS.md`` (the same as a table) are rewritten, so whatever finished
before the machine went away is on disk.

Parts (``--dry-run``: the same commands at CPU sizes, for CI; the GPU-only tests skip):

1. ``env``: python, jax, jaxlib, flax, triton, jax-triton versions, devices; which optional
   packages are missing (grain is not installed on the GPU machine: carry its wheel, see
   ``kernels/README.md``).
2. ``numerics``: ``pytest -m gpu`` on ``tests/kernels/test_gpu_numerics.py`` (xla, cudnn,
   Pallas and Mosaic GPU compiled, bf16, three cases, forward and backward vs the float64
   oracle, each asserting its fused call) and ``tests/kernels/test_triton_jax.py``.
3. ``kernel_bench``: ``python -m kernels.bench`` (xla, cudnn, pallas, mosaic, triton; head
   dims 64 and 128; sequence 2k and 8k; causal), TFLOP/s and the speed-up over XLA.
4. ``avit_step``: ``experiments.bench_surrogate gpu_impls``: the AViT-Ti bf16 train step per
   attention impl (tokens/s, MFU, peak memory, fused calls in the step).
5. ``mixers``: ``jaxfm.nn.bench_mixers`` at 1k, 4k and 16k tokens.

Usage: ``python -m kernels.gpu_check [--out DIR] [--dry-run] [--only PART ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

ENV_SNIPPET = r"""
import importlib, json, platform, sys
out = {"python": platform.python_version()}
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "grain", "triton",
             "jax_triton", "torch"):
    try:
        out[name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as e:  # missing, or a GPU-only package on a CPU machine
        out[name] = f"missing ({type(e).__name__})"
import jax
out["backend"] = jax.default_backend()
out["devices"] = [d.device_kind for d in jax.devices()]
print(json.dumps(out))
"""


@dataclasses.dataclass(frozen=True)
class Part:
    """One command of the check, its time limit on the GPU and its CPU dry-run form."""

    name: str
    gpu: tuple[str, ...]
    dry: tuple[str, ...]
    timeout_s: int
    artifacts: tuple[str, ...] = ()


def parts(out: str, py: str = sys.executable) -> list[Part]:
    """The check's parts, writing under ``out``."""
    pytest = (py, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider")
    return [
        Part("env", (py, "-c", ENV_SNIPPET), (py, "-c", ENV_SNIPPET), 20),
        Part(
            "numerics",
            (
                *pytest,
                "-m",
                "gpu",
                "tests/kernels/test_gpu_numerics.py",
                "tests/kernels/test_triton_jax.py",
            ),
            (*pytest, "-m", "gpu", "tests/kernels/test_gpu_numerics.py"),
            100,
        ),
        Part(
            "kernel_bench",
            (
                py,
                "-m",
                "kernels.bench",
                "--out",
                f"{out}/bench",
                "--impls",
                "xla",
                "cudnn",
                "pallas",
                "mosaic",
                "triton",
                "--seq-lens",
                "2048",
                "8192",
                "--head-dims",
                "64",
                "128",
                "--causal",
                "true",
                "--repeats",
                "10",
            ),
            (py, "-m", "kernels.bench", "--smoke", "--out", f"{out}/bench"),
            140,
            (f"{out}/bench/bench.md", f"{out}/bench/bench.jsonl"),
        ),
        Part(
            "avit_step",
            (py, "-m", "experiments.bench_surrogate", "gpu_impls", "--workdir", f"{out}/avit"),
            (
                py,
                "-m",
                "experiments.bench_surrogate",
                "gpu_impls",
                "--workdir",
                f"{out}/avit",
                "--bench.presets",
                "smoke",
                "--bench.grid",
                "32",
                "--bench.batch",
                "2",
                "--bench.n_steps_input",
                "2",
                "--bench.repeats",
                "1",
            ),
            170,
            (f"{out}/avit/report.md",),
        ),
        Part(
            "mixers",
            (
                py,
                "-m",
                "jaxfm.nn.bench_mixers",
                "--out",
                f"{out}/mixers",
                "--lengths",
                "1024",
                "4096",
                "16384",
                "--dtype",
                "bfloat16",
            ),
            (
                py,
                "-m",
                "jaxfm.nn.bench_mixers",
                "--smoke",
                "--out",
                f"{out}/mixers",
                "--lengths",
                "256",
                "--repeats",
                "1",
            ),
            50,
            (f"{out}/mixers/report.md",),
        ),
    ]


def _results_md(summary: dict) -> str:
    lines = [
        f"# gpu-check ({'dry run, CPU' if summary['dry_run'] else 'GPU'})",
        "",
        f"Device: {summary.get('device', '?')}. Started {summary['started']}.",
        "",
        "| part | status | wall s | limit s | artifacts |",
        "|---|---|---|---|---|",
    ]
    for p in summary["parts"]:
        status = "ok" if p["rc"] == 0 else ("timed out" if p["timed_out"] else f"rc {p['rc']}")
        arts = ", ".join(f"`{a}`" for a in p["artifacts"] if os.path.exists(a)) or "-"
        lines.append(f"| {p['name']} | {status} | {p['wall_s']:.1f} | {p['timeout_s']} | {arts} |")
    return "\n".join(lines) + "\n"


def _write(out: str, summary: dict) -> None:
    for name, text in (
        ("summary.json", json.dumps(summary, indent=1)),
        ("RESULTS.md", _results_md(summary)),
    ):
        tmp = os.path.join(out, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out, name))


def run(out: str, *, dry_run: bool, only: tuple[str, ...] = ()) -> dict:
    """Runs the parts in order; returns the summary (also in OUT/summary.json)."""
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu" if dry_run else "cuda"
    summary = {
        "dry_run": dry_run,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "parts": [],
    }
    todo = [p for p in parts(out) if not only or p.name in only]
    unknown = set(only) - {p.name for p in parts(out)}
    if unknown:
        raise SystemExit(f"gpu_check: unknown part(s) {sorted(unknown)}")
    for part in todo:
        cmd = part.dry if dry_run else part.gpu
        limit = part.timeout_s * (4 if dry_run else 1)  # CPU sizes are small, CPUs slow
        shown = " ".join(cmd).replace("\n", " ")[:160]
        print(f"== {part.name} (limit {limit} s): {shown}", flush=True)
        t0 = time.perf_counter()
        log = os.path.join(out, f"{part.name}.log")
        with open(log, "w") as f:
            try:
                rc = subprocess.run(
                    cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=limit
                ).returncode
                timed_out = False
            except subprocess.TimeoutExpired:
                rc, timed_out = 124, True
        wall = time.perf_counter() - t0
        record = {
            "name": part.name,
            "command": list(cmd),
            "rc": rc,
            "timed_out": timed_out,
            "wall_s": wall,
            "timeout_s": limit,
            "log": log,
            "artifacts": [log, *part.artifacts],
        }
        if part.name == "env" and rc == 0:
            with open(log) as f:
                env_info = json.loads(f.read().strip().splitlines()[-1])
            summary["env"] = env_info
            summary["device"] = ", ".join(env_info.get("devices", [])) or "?"
            summary["missing"] = sorted(k for k, v in env_info.items() if "missing" in str(v))
        summary["parts"].append(record)
        _write(out, summary)
        print(
            f"   {part.name}: rc {rc}{' (timed out)' if timed_out else ''}, {wall:.1f} s",
            flush=True,
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kernels.gpu_check", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--out", default="runs/gpu_check", help="output directory (default: %(default)s)"
    )
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="the same parts at CPU sizes (JAX_PLATFORMS=cpu; GPU-only tests skip); default: off",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="PART",
        help="run only these parts (env numerics kernel_bench avit_step mixers); default: all",
    )
    args = ap.parse_args(argv)
    summary = run(args.out, dry_run=args.dry_run, only=tuple(args.only))
    failed = [p["name"] for p in summary["parts"] if p["rc"] != 0]
    print(
        f"gpu-check: {len(summary['parts']) - len(failed)} of {len(summary['parts'])} parts ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + f"; see {args.out}/RESULTS.md"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
