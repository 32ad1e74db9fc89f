"""Training-step benchmark of the AViT size presets: step time, tokens/s, MFU, peak memory.

    python -m experiments.bench_surrogate cpu --workdir runs/bench-surrogate
    python -m experiments.bench_surrogate gpu --workdir runs/bench-surrogate-gpu   # + bf16

For each preset: one AdamW step (NMSE loss, gradient clipping) compiled with ``jax.jit``;
model FLOPs from the compiled executable's cost analysis (forward + backward + update, as
XLA counts them), peak memory from its memory analysis (arguments + outputs + temporaries -
aliased), step time as the median of ``repeats`` timed steps after two warm-up steps.
MFU = FLOPs / step time / peak FLOP/s of the device (``--bench.peak_tflops``, or the table
below for known GPUs; none on CPU). Tokens = batch x frames x (H/patch) x (W/patch).
Writes WORKDIR/bench.json with device, versions and git SHA, prints one line per preset, and
writes the study folder ``--results_dir`` (default: WORKDIR): command.txt, config.json,
results.json (what bench.json holds) and report.md (the table). ``--results_dir
results/bench_surrogate`` refreshes the committed folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxfm
from jaxfm.config import run_cli
from jaxfm.models.surrogate import AViT, avit_config
from jaxfm.nn.trunk import count_params
from jaxfm.provenance import command_line, compiled_peak_bytes, git_sha, write_study
from jaxfm.tasks.surrogate.metrics import surrogate_loss

PEAK_TFLOPS = {  # dense, per device: (float32 [TF32 off], bfloat16); vendor data sheets
    "H100": (67.0, 989.0),
    "H200": (67.0, 989.0),
    "A100": (19.5, 312.0),
}


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What to measure."""

    presets: tuple[str, ...] = ("smoke", "tiny", "Ti")
    """AViT presets (smoke, tiny, Ti, S, B, L)."""
    batch: int = 4
    """Batch size."""
    grid: int = 64
    """Grid points per axis (must be divisible by each preset's patch)."""
    n_steps_input: int = 4
    """Input frames T."""
    n_fields: int = 4
    """Fields per sample."""
    dtypes: tuple[str, ...] = ("float32",)
    """Compute dtypes to measure (float32, bfloat16)."""
    repeats: int = 5
    """Timed steps per preset (median reported)."""
    peak_tflops: float = 0.0
    """Device peak TFLOP/s for MFU (0: from the GPU table, none on CPU)."""


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Benchmark (no training run: no train/ckpt sections)."""

    workdir: str = "runs/bench-surrogate"
    """Where bench.json is written."""
    results_dir: str = ""
    """Study folder (command.txt, config.json, results.json, report.md); empty: WORKDIR."""
    bench: BenchOptions = dataclasses.field(default_factory=BenchOptions)
    """Benchmark settings."""


def cpu() -> BenchConfig:
    """CPU sizes: smoke, tiny and Ti at 64x64, batch 4."""
    return BenchConfig(workdir="runs/bench-surrogate")


def smoke() -> BenchConfig:
    """Seconds: the smoke preset only, 32x32, 2 timed steps."""
    return BenchConfig(
        workdir="runs/bench-surrogate-smoke",
        bench=BenchOptions(presets=("smoke",), batch=2, grid=32, repeats=2),
    )


def gpu() -> BenchConfig:
    """GPU: Ti, S, B at 128x128, T 16, batch 8, float32 and bfloat16."""
    return BenchConfig(
        workdir="runs/bench-surrogate-gpu",
        bench=BenchOptions(
            presets=("Ti", "S", "B"),
            batch=8,
            grid=128,
            n_steps_input=16,
            dtypes=("float32", "bfloat16"),
            repeats=10,
        ),
    )


PRESETS = {"cpu": cpu, "smoke": smoke, "gpu": gpu}


def _peak(opts: BenchOptions, dtype: str) -> float | None:
    if opts.peak_tflops:
        return opts.peak_tflops * 1e12
    kind = jax.devices()[0].device_kind
    for name, (f32, bf16) in PEAK_TFLOPS.items():
        if name in kind:
            return (bf16 if dtype == "bfloat16" else f32) * 1e12
    return None


def bench_preset(name: str, dtype: str, opts: BenchOptions) -> dict:
    """Compiles and times one training step of preset ``name``."""
    cfg = avit_config(name)
    model = AViT(cfg, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(
        model, optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-4)), wrt=nnx.Param
    )
    graph, state = nnx.split((model, opt))
    cdt = jnp.dtype(dtype)
    key = jax.random.key(0)
    x = jax.random.normal(
        key, (opts.batch, opts.n_steps_input, opts.grid, opts.grid, opts.n_fields)
    )
    y = jax.random.normal(key, (opts.batch, opts.grid, opts.grid, opts.n_fields))
    ids = jnp.arange(opts.n_fields, dtype=jnp.int32)

    def step(state, x, y):
        model, opt = nnx.merge(graph, state)

        def loss_fn(m):
            pred = m(x.astype(cdt), ids)
            return surrogate_loss(pred.astype(jnp.float32), y)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=0).lower(state, x, y).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    peak_bytes = compiled_peak_bytes(compiled)
    times = []
    for i in range(opts.repeats + 2):
        t = time.perf_counter()
        state, loss = compiled(state, x, y)
        loss.block_until_ready()
        if i >= 2:
            times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    tokens = opts.batch * opts.n_steps_input * (opts.grid // cfg.patch) ** 2
    peak = _peak(opts, dtype)
    return {
        "preset": name,
        "dtype": dtype,
        "params": count_params(model),
        "batch": opts.batch,
        "grid": opts.grid,
        "n_steps_input": opts.n_steps_input,
        "tokens_per_step": tokens,
        "compile_s": compile_s,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "flops_per_step": flops,
        "achieved_tflops": flops / step_s / 1e12,
        "mfu": (flops / step_s / peak) if peak and flops else None,
        "peak_memory_bytes": peak_bytes,
        "loss": float(loss),
    }


def report(out: dict, command: str) -> str:
    """report.md: one table row per preset and dtype (an MFU column where a peak is known)."""
    rows = out["results"]
    mfu = any(r["mfu"] is not None for r in rows)
    lines = [
        f"# Surrogate training-step benchmark ({out['platform'].upper()})",
        "",
        f"Command: `{command}` (device {out['device']}, {out['n_devices']} device(s), jax "
        f"`{out['jax']}`). Options: `{json.dumps(out['options'])}`.",
        "",
        "| preset | dtype | params | step s | tokens/s | TFLOP/s | "
        + ("MFU | " if mfu else "")
        + "peak MiB | compile s |",
        "|" + "---|" * (9 if mfu else 8),
    ]
    for r in rows:
        cells = [
            r["preset"],
            r["dtype"],
            f"{r['params']:,}",
            f"{r['step_s']:.4f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['achieved_tflops']:.3f}",
        ]
        if mfu:
            cells.append("-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%")
        mem = r["peak_memory_bytes"]
        cells += ["-" if not mem else f"{mem / 2**20:.0f}", f"{r['compile_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(cfg: BenchConfig, command: str | None = None) -> dict:
    """Measures every preset and dtype; writes WORKDIR/bench.json and the study folder."""
    dev = jax.devices()[0]
    out = {
        "device": dev.device_kind,
        "platform": dev.platform,
        "n_devices": jax.device_count(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "git_sha": git_sha(),
        "options": dataclasses.asdict(cfg.bench),
        "results": [],
    }
    for name in cfg.bench.presets:
        for dtype in cfg.bench.dtypes:
            r = bench_preset(name, dtype, cfg.bench)
            out["results"].append(r)
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            mem = f"{r['peak_memory_bytes'] / 2**20:.0f} MiB" if r["peak_memory_bytes"] else "n/a"
            print(
                f"{name:6s} {dtype:8s} {r['params']:>12,d} params | step {r['step_s']:.4f} s | "
                f"{r['tokens_per_s']:,.0f} tok/s | {r['achieved_tflops']:.3f} TFLOP/s | "
                f"MFU {mfu} | peak mem {mem} | compile {r['compile_s']:.1f} s",
                flush=True,
            )
    os.makedirs(cfg.workdir, exist_ok=True)
    with open(os.path.join(cfg.workdir, "bench.json"), "w") as f:
        json.dump(out, f, indent=1)
    command = command or command_line()
    write_study(
        cfg.results_dir or cfg.workdir,
        command=command,
        config=cfg,
        results=out,
        report=report(out, command),
    )
    return out


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, BenchConfig, PRESETS, doc=__doc__)
