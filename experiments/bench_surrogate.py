"""Training-step benchmark of the AViT size presets: step time, tokens/s, MFU, peak memory.

    python -m experiments.bench_surrogate cpu --workdir runs/bench-surrogate
    python -m experiments.bench_surrogate gpu --workdir runs/bench-surrogate-gpu   # + bf16

For each preset: one AdamW step (NMSE loss, gradient clipping) compiled with ``jax.jit``,
float32 parameters cast to the compute dtype inside the loss as the training engine does
(the count of matmuls whose operands are both in that dtype is recorded);
model FLOPs from the compiled executable's cost analysis (forward + backward + update, as
XLA counts them), peak memory from its memory analysis (arguments + outputs + temporaries -
aliased), step time as the median of ``repeats`` timed steps after two warm-up steps.
MFU = FLOPs / step time / peak FLOP/s of the device (``--bench.peak_tflops``, or the table
below for known GPUs; none on CPU). Tokens = batch x frames x (H/patch) x (W/patch).
Writes WORKDIR/bench.json with device, versions and git SHA, prints one line per preset, and
writes the study folder ``--results_dir`` (default: WORKDIR): command.txt, config.json,
results.json (what bench.json holds) and report.md (the table). ``--results_dir
results/bench_surrogate`` refreshes the committed folder.

Side by side with PyTorch MPP (``compare`` preset: configs a, b, c of ``COMPARE``)::

    JAXFM_MPP_SRC=/path/to/mpp python -m experiments.bench_surrogate compare \\
        --bench.torch_python /path/to/torch/python

MPP's own AViT comes from the unchanged checkout at ``$JAXFM_MPP_SRC`` (never downloaded:
the comparison is only meaningful against MPP's code as published) and runs in a long-lived
worker, ``experiments/_mpp_torch_worker.py``, under ``--bench.torch_python`` (torch may live in
another interpreter than jax). Both sides build the same sizes and train step (float32,
AdamW, clip 1.0, NMSE, drop path off) on as many threads as this process may use. Steps
alternate between torch and jax in blocks of ``compare_block`` so that machine noise hits
both; medians of ``compare_steps`` after ``compare_warmup``, for the train step and the
forward (no gradient), jax's compile time and torch's first step apart, ratios torch / jax
(> 1: jaxfm faster; the goal is ``GOAL``). Without ``torch_python`` only the jax side runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import tempfile
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxfm
from jaxfm.config import ConfigError, run_cli
from jaxfm.models.surrogate import PRESETS as AVIT_PRESETS
from jaxfm.models.surrogate import AViT, avit_config
from jaxfm.nn.layer_stack import REMAT_POLICIES
from jaxfm.nn.params import cast_floats, fp32_mask
from jaxfm.nn.trunk import count_params
from jaxfm.provenance import command_line, compiled_peak_bytes, dot_dtypes, git_sha, write_study
from jaxfm.tasks.surrogate.metrics import surrogate_loss
from jaxfm.xla_profile import CATEGORIES, breakdown
from kernels.cuda_lowering import CUDNN_ATTENTION, MOSAIC_GPU, PALLAS_TRITON, custom_calls

#: Custom-call targets of the fused attention paths (Pallas' Triton call, cuDNN).
FUSED_ATTENTION = (PALLAS_TRITON, MOSAIC_GPU, *CUDNN_ATTENTION)

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
    layers: tuple[str, ...] = ("unroll",)
    """How the blocks run, one row each: scan or unroll, optionally +REMAT (a policy of
    jaxfm.nn.layer_stack: full, dots, dots_no_batch), e.g. scan+full."""
    depths: tuple[int, ...] = (0,)
    """Block counts to measure, one row each (0: the preset's depth)."""
    attn_impls: tuple[str, ...] = ("auto",)
    """Attention implementations, one row each (jaxfm.nn.attention: auto, xla, cudnn,
    pallas, triton)."""
    repeats: int = 5
    """Timed steps per preset (median reported)."""
    peak_tflops: float = 0.0
    """Device peak TFLOP/s for MFU (0: from the GPU table, none on CPU)."""
    compare: tuple[str, ...] = ()
    """Side-by-side configs with PyTorch MPP (keys of COMPARE: a, b, c, tiny); empty: none."""
    torch_python: str = ""
    """A Python with torch and einops for MPP's side ($JAXFM_MPP_SRC); empty: jax side only."""
    compare_warmup: int = 3
    """Untimed steps per side after compilation / the first step."""
    compare_steps: int = 10
    """Timed steps per side (median reported)."""
    compare_block: int = 2
    """Steps per turn: torch and jax alternate in blocks of this many until compare_steps."""
    profile: bool = False
    """After timing each side-by-side config, profile jax's train step and forward
    (jaxfm.xla_profile: time per op class, slowest ops)."""


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


def layers() -> BenchConfig:
    """Compile and step time of Ti, S and B with the blocks scanned vs unrolled, and with
    remat, at 64x64, T 4, batch 2 (CPU sizes); the ``depth`` preset does the same for Ti at
    12 and 24 blocks."""
    return BenchConfig(
        workdir="runs/bench-surrogate-layers",
        bench=BenchOptions(
            presets=("Ti", "S", "B"),
            batch=2,
            layers=("unroll", "scan", "scan+full", "scan+dots_no_batch"),
        ),
    )


def depth() -> BenchConfig:
    """How compile time grows with depth: Ti with 12 and 24 blocks, scanned vs unrolled."""
    return BenchConfig(
        workdir="runs/bench-surrogate-depth",
        bench=BenchOptions(
            presets=("Ti",), batch=2, depths=(12, 24), layers=("unroll", "scan", "scan+full")
        ),
    )


def gpu_impls() -> BenchConfig:
    """GPU: Ti in bfloat16 at 128x128, T 16, batch 8, once per attention impl (xla, cudnn,
    pallas, mosaic): step time, MFU, memory and how many fused attention calls the step holds."""
    return BenchConfig(
        workdir="runs/bench-surrogate-gpu-impls",
        bench=BenchOptions(
            presets=("Ti",),
            batch=8,
            grid=128,
            n_steps_input=16,
            dtypes=("bfloat16",),
            attn_impls=("xla", "cudnn", "pallas", "mosaic"),
            repeats=10,
        ),
    )


def compare() -> BenchConfig:
    """Side by side with PyTorch MPP: configs a, b, c (see COMPARE), float32."""
    return BenchConfig(
        workdir="runs/bench-surrogate-compare",
        bench=BenchOptions(presets=(), compare=("a", "b", "c")),
    )


PRESETS = {
    "cpu": cpu,
    "smoke": smoke,
    "gpu": gpu,
    "layers": layers,
    "depth": depth,
    "gpu_impls": gpu_impls,
    "compare": compare,
}


def parse_layers(mode: str) -> tuple[bool, str]:
    """``scan`` / ``unroll`` [+ remat policy] -> (scan_layers, remat)."""
    how, _, remat = mode.partition("+")
    remat = remat or "none"
    if how not in ("scan", "unroll") or remat not in REMAT_POLICIES:
        raise ConfigError(
            f"bench.layers: {mode!r} is not scan or unroll[+REMAT] with REMAT one of "
            f"{sorted(REMAT_POLICIES)}"
        )
    return how == "scan", remat


def _peak(opts: BenchOptions, dtype: str) -> float | None:
    if opts.peak_tflops:
        return opts.peak_tflops * 1e12
    kind = jax.devices()[0].device_kind
    for name, (f32, bf16) in PEAK_TFLOPS.items():
        if name in kind:
            return (bf16 if dtype == "bfloat16" else f32) * 1e12
    return None


def _short(dtype) -> str:
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}[jnp.dtype(dtype).name]


def bench_preset(
    name: str,
    dtype: str,
    opts: BenchOptions,
    layers: str = "unroll",
    depth: int = 0,
    attn_impl: str = "auto",
) -> dict:
    """Compiles and times one training step of preset ``name`` (with ``depth`` blocks, 0:
    the preset's), its blocks run as ``layers`` says (:func:`parse_layers`).

    A scanned stack's FLOPs are not reported: XLA's cost analysis counts a loop body once."""
    scan_layers, remat = parse_layers(layers)
    cfg = avit_config(name, scan_layers=scan_layers, remat=remat, attn_impl=attn_impl)
    if depth:
        cfg = dataclasses.replace(cfg, depth=depth)
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

    keep = fp32_mask(nnx.state(model, nnx.Param))

    def step(state, x, y):
        model, opt = nnx.merge(graph, state)

        def loss_fn(m):
            # the engine's compute policy: float32 parameters cast to the compute dtype
            # inside the loss (Fp32Param leaves kept), so the matmuls really run in it
            mgraph, params, rest = nnx.split(m, nnx.Param, ...)
            params = cast_floats(nnx.to_pure_dict(params), cdt, keep)
            pred = nnx.merge(mgraph, params, rest)(x.astype(cdt), ids)
            return surrogate_loss(pred.astype(jnp.float32), y)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=0).lower(state, x, y)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    dots = dot_dtypes(lowered.as_text())
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    if scan_layers and cfg.depth > 1:
        flops = 0.0  # the loop body is counted once, not once per block
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
        "layers": layers,
        "depth": cfg.depth,
        "attn_impl": attn_impl,
        "fused_attention_calls": sum(
            n for t, n in custom_calls(lowered.as_text()).items() if t in FUSED_ATTENTION
        ),
        "params": count_params(model),
        "batch": opts.batch,
        "grid": opts.grid,
        "n_steps_input": opts.n_steps_input,
        "tokens_per_step": tokens,
        "compile_s": compile_s,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "flops_per_step": flops,
        "achieved_tflops": (flops / step_s / 1e12) if flops else None,
        "mfu": (flops / step_s / peak) if peak and flops else None,
        "peak_memory_bytes": peak_bytes,
        "dots_in_compute_dtype": dots.get(f"{_short(cdt)}x{_short(cdt)}", 0),
        "dots": sum(dots.values()),
        "loss": float(loss),
    }


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    """One side-by-side configuration (float32, MPP's patch 16)."""

    preset: str
    batch: int
    n_steps_input: int
    n_fields: int
    grid: int
    periodic: bool
    dim: int = 0
    """Width, heads and depth; 0: the preset's (tests shrink them to run in seconds)."""
    heads: int = 0
    depth: int = 0


COMPARE = {
    "a": CompareSpec("Ti", batch=4, n_steps_input=8, n_fields=4, grid=128, periodic=True),
    "b": CompareSpec("Ti", batch=8, n_steps_input=4, n_fields=2, grid=64, periodic=False),
    "c": CompareSpec("S", batch=2, n_steps_input=8, n_fields=4, grid=128, periodic=True),
    "tiny": CompareSpec(
        "Ti", batch=1, n_steps_input=2, n_fields=2, grid=32, periodic=True, dim=32, heads=2, depth=1
    ),
}
GOAL = 1.5
"""The goal: jaxfm's train step at least this many times faster than MPP's (torch / jax)."""
TORCH_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mpp_torch_worker.py")


def mpp_source() -> str:
    """The MPP checkout named by JAXFM_MPP_SRC (never downloaded); a one-line error if not."""
    src = os.environ.get("JAXFM_MPP_SRC", "")
    if not src or not os.path.isfile(os.path.join(src, "models", "avit.py")):
        raise ConfigError(
            "--bench.torch_python needs JAXFM_MPP_SRC set to a checkout of "
            f"github.com/PolymathicAI/multiple_physics_pretraining (no models/avit.py in {src!r})"
        )
    return src


def cpu_threads() -> int:
    """Cores this process may use: XLA's CPU thread pool uses them all, so torch gets as many."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> str:
    """CPU model (or platform) and core count, for the report."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores, {platform.system()}"


class TorchWorker:
    """MPP's PyTorch AViT in a long-lived subprocess (experiments/_mpp_torch_worker.py), so
    torch and jax steps can take turns without restarting torch between them."""

    def __init__(self, python: str, src: str):
        self._err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [python, TORCH_WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env={**os.environ, "JAXFM_MPP_SRC": src},
        )

    def ask(self, **req) -> dict:
        """Sends one command, returns the worker's JSON answer."""
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self._err.seek(0)
            raise RuntimeError(f"the torch worker stopped:\n{self._err.read()[-3000:]}")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"torch worker: {out['error']}")
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _compare_model(spec: CompareSpec):
    sizes = {k: getattr(spec, k) for k in ("dim", "heads", "depth") if getattr(spec, k)}
    return avit_config(spec.preset, **sizes)


def _jax_side(spec: CompareSpec):
    """Compiled train step and forward of the AViT of ``spec`` (float32, open or periodic)."""
    cfg = _compare_model(spec)
    model = AViT(cfg, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(
        model, optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-4)), wrt=nnx.Param
    )
    graph, state = nnx.split((model, opt))
    key = jax.random.key(0)
    g = spec.grid
    x = jax.random.normal(key, (spec.batch, spec.n_steps_input, g, g, spec.n_fields))
    y = jax.random.normal(key, (spec.batch, g, g, spec.n_fields))
    ids = jnp.arange(spec.n_fields, dtype=jnp.int32)
    periodic = jnp.asarray([spec.periodic, spec.periodic])

    def step(state, x, y):
        model, opt = nnx.merge(graph, state)
        loss, grads = nnx.value_and_grad(lambda m: surrogate_loss(m(x, ids, periodic=periodic), y))(
            model
        )
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    def fwd(state, x):
        model, _ = nnx.merge(graph, state)
        return model(x, ids, periodic=periodic)

    t0 = time.perf_counter()
    step_c = jax.jit(step, donate_argnums=0).lower(state, x, y).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fwd_c = jax.jit(fwd).lower(state, x).compile()
    fwd_compile_s = time.perf_counter() - t0
    box = {"state": state, "loss": None}

    def train(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            box["state"], loss = step_c(box["state"], x, y)
            loss.block_until_ready()
            times.append(time.perf_counter() - t)
            box["loss"] = loss
        return times

    def forward(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fwd_c(box["state"], x).block_until_ready()
            times.append(time.perf_counter() - t)
        return times

    def profile() -> dict:
        def one_step():
            box["state"], loss = step_c(box["state"], x, y)
            return loss

        return {
            "step": breakdown(one_step, step_c.as_text()),
            "fwd": breakdown(lambda: fwd_c(box["state"], x), fwd_c.as_text()),
        }

    box["profile"] = profile
    return cfg, count_params(model), compile_s, fwd_compile_s, train, forward, box


def _turns(jax_fn, torch_fn, opts: BenchOptions) -> tuple[list[float], list[float]]:
    """compare_steps timed steps per side, torch and jax alternating in blocks."""
    jt, tt = [], []
    while len(jt) < opts.compare_steps:
        k = min(opts.compare_block, opts.compare_steps - len(jt))
        if torch_fn is not None:
            tt += torch_fn(k)
        jt += jax_fn(k)
    return jt, tt


def _ratio(num: float | None, den: float) -> float | None:
    return None if num is None else num / den


def compare_config(name: str, opts: BenchOptions, worker: TorchWorker | None) -> dict:
    """Times config ``name`` on both sides, interleaved; medians, ratios torch / jax."""
    spec = COMPARE[name]
    threads = cpu_threads()
    cfg, params, compile_s, fwd_compile_s, jax_train, jax_fwd, box = _jax_side(spec)
    torch_train = torch_fwd = None
    tinfo = {}
    if worker is not None:
        tinfo = worker.ask(
            cmd="setup",
            dim=cfg.dim,
            heads=cfg.heads,
            depth=cfg.depth,
            n_states=cfg.n_fields,
            batch=spec.batch,
            t=spec.n_steps_input,
            fields=spec.n_fields,
            grid=spec.grid,
            periodic=spec.periodic,
            threads=threads,
        )
        worker.ask(cmd="train", n=opts.compare_warmup)
        worker.ask(cmd="fwd", n=opts.compare_warmup)

        def torch_train(n):
            out = worker.ask(cmd="train", n=n)
            tinfo["loss"] = out["loss"]
            return out["times"]

        def torch_fwd(n):
            return worker.ask(cmd="fwd", n=n)["times"]

    jax_train(opts.compare_warmup)
    jax_fwd(opts.compare_warmup)
    jt, tt = _turns(jax_train, torch_train, opts)
    jf, tf = _turns(jax_fwd, torch_fwd, opts)
    med = lambda v: float(np.median(v)) if v else None  # noqa: E731
    jax_step, jax_f, torch_step, torch_f = med(jt), med(jf), med(tt), med(tf)
    step_ratio = _ratio(torch_step, jax_step)
    profile = box["profile"]() if opts.profile else None
    return {
        "config": name,
        "jax_profile": profile,
        **dataclasses.asdict(spec),
        "dim": cfg.dim,
        "heads": cfg.heads,
        "depth": cfg.depth,
        "dtype": "float32",
        "threads": threads,
        "torch_threads": tinfo.get("threads"),
        "params_jax": params,
        "params_torch": tinfo.get("params"),
        "jax_compile_s": compile_s,
        "jax_fwd_compile_s": fwd_compile_s,
        "jax_step_s": jax_step,
        "jax_fwd_s": jax_f,
        "torch_first_step_s": tinfo.get("first_step_s"),
        "torch_first_fwd_s": tinfo.get("first_fwd_s"),
        "torch_step_s": torch_step,
        "torch_fwd_s": torch_f,
        "step_ratio": step_ratio,
        "fwd_ratio": _ratio(torch_f, jax_f),
        "goal_met": None if step_ratio is None else step_ratio >= GOAL,
        "jax_step_times": jt,
        "torch_step_times": tt,
        "jax_fwd_times": jf,
        "torch_fwd_times": tf,
        "jax_loss": float(box["loss"]),
        "torch_loss": tinfo.get("loss"),
        "torch": tinfo.get("torch"),
    }


def _check_compare(opts: BenchOptions) -> None:
    unknown = [n for n in opts.compare if n not in COMPARE]
    if unknown:
        raise ConfigError(f"unknown --bench.compare {unknown}; choose from {sorted(COMPARE)}")
    if opts.torch_python:
        mpp_source()


def run_compare(opts: BenchOptions) -> list[dict]:
    """Every config of ``opts.compare``; the torch worker lives across all of them."""
    _check_compare(opts)
    worker = TorchWorker(opts.torch_python, mpp_source()) if opts.torch_python else None
    rows = []
    try:
        for name in opts.compare:
            r = compare_config(name, opts, worker)
            rows.append(r)
            print(_compare_line(r), flush=True)
    finally:
        if worker is not None:
            worker.close()
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1e3 * v:.1f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _compare_line(r: dict) -> str:
    return (
        f"compare {r['config']:4s} {r['preset']} | jax compile {r['jax_compile_s']:.1f} s, step "
        f"{_ms(r['jax_step_s'])} ms, fwd {_ms(r['jax_fwd_s'])} ms | torch step "
        f"{_ms(r['torch_step_s'])} ms, fwd {_ms(r['torch_fwd_s'])} ms | ratio step "
        f"{_x(r['step_ratio'])}, fwd {_x(r['fwd_ratio'])} | {r['threads']} threads"
    )


def compare_report(out: dict, command: str) -> list[str]:
    """The side-by-side table (times are medians; ratio = torch / jax, >1: jaxfm faster)."""
    lines = [
        "",
        "## Side by side with PyTorch MPP",
        "",
        f"Command: `{command}`. Machine: {out['machine']}. jax `{out['jax']}`, torch "
        f"`{out.get('torch') or '-'}`. float32, AdamW, clip 1.0, NMSE; median of "
        f"{out['options']['compare_steps']} steps after {out['options']['compare_warmup']} "
        f"warm-ups, torch and jax alternating in blocks of {out['options']['compare_block']}; "
        "jax compile = lower + compile, torch's first step reported as `torch first s`. "
        f"Goal: step ratio >= {GOAL}.",
        "",
        "| config | preset | batch x T x fields x grid | bc | jax compile s | torch first s "
        "| jax step ms | torch step ms | step ratio | jax fwd ms | torch fwd ms | fwd ratio "
        "| goal | threads |",
        "|" + "---|" * 14,
    ]
    for r in out["compare"]:
        goal = "-" if r["goal_met"] is None else ("yes" if r["goal_met"] else "no")
        first = r["torch_first_step_s"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["config"],
                    r["preset"],
                    f"{r['batch']} x {r['n_steps_input']} x {r['n_fields']} x {r['grid']}²",
                    "periodic" if r["periodic"] else "open",
                    f"{r['jax_compile_s']:.1f}",
                    "-" if first is None else f"{first:.2f}",
                    _ms(r["jax_step_s"]),
                    _ms(r["torch_step_s"]),
                    _x(r["step_ratio"]),
                    _ms(r["jax_fwd_s"]),
                    _ms(r["torch_fwd_s"]),
                    _x(r["fwd_ratio"]),
                    goal,
                    str(r["threads"]),
                ]
            )
            + " |"
        )
    profiled = [r for r in out["compare"] if r.get("jax_profile")]
    if profiled:
        lines += [
            "",
            "## Where jax's time goes (jaxfm.xla_profile)",
            "",
            "Milliseconds per call by op class (XLA op events of `jax.profiler`, classed from the "
            "compiled HLO), wall time under the profiler, and the slowest ops.",
            "",
            "| config | pass | wall ms | "
            + " | ".join(f"{c} ms" for c in CATEGORIES)
            + " | outside ops ms | slowest ops (ms) |",
            "|" + "---|" * (5 + len(CATEGORIES)),
        ]
        for r in profiled:
            for which in ("step", "fwd"):
                p = r["jax_profile"][which]
                top = ", ".join(
                    f"{o['op']} ({o['category']}) {1e3 * o['s']:.1f}" for o in p["top_ops"][:3]
                )
                cells = [r["config"], which, f"{1e3 * p['wall_s']:.1f}"]
                cells += [f"{1e3 * p['by_category_s'][c]:.1f}" for c in CATEGORIES]
                cells += [f"{1e3 * p['unattributed_s']:.1f}", top]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def _tflops(r: dict) -> str:
    if r.get("layers", "unroll").startswith("scan") and r.get("depth", 2) > 1:
        return "-"  # XLA's cost analysis counts a scanned loop body once
    return "-" if r["achieved_tflops"] is None else f"{r['achieved_tflops']:.3f}"


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
        "| preset | depth | dtype | layers | attention | params | step s | tokens/s | TFLOP/s | "
        + ("MFU | " if mfu else "")
        + "peak MiB | compile s |",
        "|" + "---|" * (12 if mfu else 11),
    ]
    if not rows:
        lines = lines[:3]
    for r in rows:
        cells = [
            r["preset"],
            str(r.get("depth", AVIT_PRESETS[r["preset"]].depth)),  # rows saved before depth
            r["dtype"],
            r.get("layers", "unroll"),  # rows measured before scanning existed
            r.get("attn_impl", "auto"),
            f"{r['params']:,}",
            f"{r['step_s']:.4f}",
            f"{r['tokens_per_s']:,.0f}",
            _tflops(r),
        ]
        if mfu:
            cells.append("-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%")
        mem = r["peak_memory_bytes"]
        cells += ["-" if not mem else f"{mem / 2**20:.0f}", f"{r['compile_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if out.get("compare"):
        lines += compare_report(out, command)
    return "\n".join(lines) + "\n"


def main(cfg: BenchConfig, command: str | None = None) -> dict:
    """Measures every preset and dtype, then the side-by-side configs; writes
    WORKDIR/bench.json and the study folder."""
    _check_compare(cfg.bench)  # fail in one line before compiling anything
    for mode in cfg.bench.layers:
        parse_layers(mode)
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
    runs = [
        (name, depth, dtype, mode, impl)
        for name in cfg.bench.presets
        for depth in cfg.bench.depths
        for dtype in cfg.bench.dtypes
        for mode in cfg.bench.layers
        for impl in cfg.bench.attn_impls
    ]
    for name, depth, dtype, mode, impl in runs:
        r = bench_preset(name, dtype, cfg.bench, mode, depth, impl)
        out["results"].append(r)
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_memory_bytes'] / 2**20:.0f} MiB" if r["peak_memory_bytes"] else "n/a"
        print(
            f"{name:6s} depth {r['depth']:2d} {dtype:8s} {mode:18s} "
            f"{r['params']:>12,d} params | "
            f"step {r['step_s']:.4f} s | "
            f"{r['tokens_per_s']:,.0f} tok/s | {_tflops(r)} TFLOP/s | "
            f"MFU {mfu} | peak mem {mem} | compile {r['compile_s']:.1f} s | "
            f"{r['dots_in_compute_dtype']}/{r['dots']} matmuls in {dtype} | attention "
            f"{impl}: {r['fused_attention_calls']} fused calls",
            flush=True,
        )
    if cfg.bench.compare:
        out["machine"] = machine()
        out["threads"] = cpu_threads()
        out["compare"] = run_compare(cfg.bench)
        out["torch"] = next((r["torch"] for r in out["compare"] if r.get("torch")), None)
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
