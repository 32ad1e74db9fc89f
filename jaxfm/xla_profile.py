"""Where a compiled step spends its time: per-op times from ``jax.profiler``, classed by HLO.

A step time says how long; this says on what. It runs the compiled function a few times under
``jax.profiler.trace`` (a Perfetto trace), sums the duration of every XLA op event (named after
the HLO instruction: ``fusion.12``, ``copy.3``, ...) and classes each instruction by reading the
compiled HLO: a matmul (a dot or convolution, alone or inside a fusion), a reduction, data
movement (copies, transposes, slices, pads, concatenations, gathers, scatters, broadcasts,
and fusions built around a transpose or layout copy) or other element-wise work. Time outside
ops (dispatch, the Python side) is what is left of the wall time.

Used by ``experiments.bench_surrogate`` (``--bench.profile``) to explain a step-time gap.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time
from collections.abc import Callable

import jax

MATMUL_OPS = ("dot", "convolution", "custom-call")
MOVE_OPS = (
    "copy",
    "transpose",
    "slice",
    "dynamic-slice",
    "dynamic-update-slice",
    "pad",
    "concatenate",
    "gather",
    "scatter",
    "broadcast",
    "reshape",
    "bitcast",
    "copy-start",
    "copy-done",
)
CATEGORIES = ("matmul", "reduction", "data movement", "element-wise")

_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][a-z0-9\-]*)\((.*)$")


def _computations(hlo: str) -> dict[str, list[tuple[str, str, str]]]:
    """computation name -> [(instruction name, opcode, rest of the line)]."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for line in hlo.splitlines():
        line = re.sub(r"/\*.*?\*/", "", line)  # /*index=5*/ comments in long signatures
        if current is None:
            m = _COMPUTATION.match(line)
            if m and "=" not in line.split("{")[0]:
                current = m.group(1)
                out[current] = []
            continue
        if line.strip() == "}":
            current = None
            continue
        m = _INSTRUCTION.match(line)
        if m:
            out[current].append((m.group(1), m.group(2), m.group(3)))
    return out


def _opcode_class(opcode: str) -> str:
    if opcode in MATMUL_OPS:
        return "matmul"
    if opcode in ("reduce", "reduce-window", "all-reduce"):
        return "reduction"
    if opcode in MOVE_OPS:
        return "data movement"
    return "element-wise"


def classify(hlo: str) -> dict[str, str]:
    """Every instruction name of the HLO module text -> one of ``CATEGORIES``.

    A fusion is a matmul if its computation (or one it calls) holds a dot or convolution,
    else a reduction if it holds a reduce, else data movement if it holds a transpose or a
    layout copy (or only data-movement ops), else element-wise."""
    comps = _computations(hlo)

    def opcodes(name: str, seen: set[str]) -> set[str]:
        if name in seen or name not in comps:
            return set()
        seen.add(name)
        ops = set()
        for _, op, rest in comps[name]:
            ops.add(op)
            for callee in re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", rest):
                ops |= opcodes(callee, seen)
        return ops

    out = {}
    for instrs in comps.values():
        for name, op, rest in instrs:
            if op != "fusion":
                out[name] = _opcode_class(op)
                continue
            callee = re.search(r"calls=%?([\w.\-]+)", rest)
            ops = opcodes(callee.group(1), set()) if callee else set()
            ops -= {"parameter", "constant", "tuple", "get-tuple-element"}
            if ops & set(MATMUL_OPS):
                out[name] = "matmul"
            elif "reduce" in ops:
                out[name] = "reduction"
            elif ops & {"transpose", "copy"} or (ops and ops <= set(MOVE_OPS)):
                # a fused transpose or layout copy sets the memory-access pattern of the
                # whole fusion, whatever element-wise work rides along
                out[name] = "data movement"
            else:
                out[name] = "element-wise"
    return out


def op_times(fn: Callable[[], object], steps: int = 3) -> tuple[dict[str, float], float]:
    """(XLA op name -> seconds per call, wall seconds per call) of ``fn()`` over ``steps``
    calls under the profiler (``fn`` runs a compiled, warm function; a train step threads its
    own state, so donated buffers are never reused)."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            t0 = time.perf_counter()  # the calls only, not the profiler's start and stop
            for _ in range(steps):
                jax.block_until_ready(fn())
            wall = (time.perf_counter() - t0) / steps
        files = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
        if not files:
            raise RuntimeError(f"jax.profiler wrote no perfetto trace under {d}")
        with gzip.open(files[0]) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals: dict[str, float] = collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and re.fullmatch(r"[a-z_][\w.\-]*", name):
            totals[name] += e.get("dur", 0.0) * 1e-6 / steps
    return dict(totals), wall


def breakdown(fn: Callable[[], object], hlo: str, *, steps: int = 3, top: int = 10) -> dict:
    """Seconds per call by category (and each category's share of the op time), the ``top``
    slowest ops, and the wall time, of ``fn()``,
    which runs the compiled program whose HLO text (``compiled.as_text()``) is ``hlo``. Ops the
    HLO does not name (runtime events) are left out; ``unattributed_s`` is wall time minus the
    ops' sum (dispatch, waiting, profiler overhead; negative where ops ran concurrently)."""
    times, wall = op_times(fn, steps=steps)
    kinds = classify(hlo)
    named = {k: v for k, v in times.items() if k in kinds}
    by_cat = {c: 0.0 for c in CATEGORIES}
    for name, t in named.items():
        by_cat[kinds[name]] += t
    ops_s = sum(named.values())
    slowest = sorted(named.items(), key=lambda kv: -kv[1])[:top]
    return {
        "wall_s": wall,
        "ops_s": ops_s,
        "unattributed_s": wall - ops_s,
        "by_category_s": by_cat,
        "share": {c: (t / ops_s if ops_s else 0.0) for c, t in by_cat.items()},
        "top_ops": [{"op": k, "category": kinds[k], "s": v} for k, v in slowest],
        "n_ops": len(named),
    }
