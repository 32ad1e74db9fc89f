"""Metrics writer and progress line.

One writer, process 0 only: ``metrics.jsonl`` always (one JSON object per logged step, with
``step``, ``loss``, ``lr``, ``step_time_s``, ``examples_per_s``), TensorBoard optionally
(tensorboardX, no TensorFlow needed). The progress line shows steps/s and an ETA measured
after the first step, so the compile time never inflates the estimate.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import numpy as np


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.ndarray, np.generic)):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf; keep them readable
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


class MetricWriter:
    """Appends metric records to ``WORKDIR/metrics.jsonl`` (and TensorBoard if asked).

    Args:
      workdir: run directory.
      enabled: False on processes other than 0 (every call becomes a no-op).
      tensorboard: also write TensorBoard events to ``WORKDIR/tb``.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled and tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise RuntimeError(
                    "train.tensorboard=true needs tensorboardX: "
                    "pip install 'jaxfm-science[tensorboard]'"
                ) from None
            self._tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Writes one record; array values are converted to lists."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if np.ndim(v) == 0 and isinstance(v, (int, float, np.number)):
                    self._tb.add_scalar(k, float(v), step)
            self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step`` (a resumed run rewrites the steps it repeats).

        A process killed in the middle of :meth:`write` leaves a torn last line; it is dropped
        with a one-line warning (file and line number) so that the file stays valid JSONL and
        the resume goes on. A malformed line anywhere else is left to fail loudly: it is not a
        torn write but a damaged file.
        """
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            raw = f.readlines()
        lines = []
        for number, ln in enumerate(raw, start=1):
            if not ln.strip():
                continue
            try:
                record = json.loads(ln)
            except json.JSONDecodeError:
                if number != len(raw):
                    raise ValueError(
                        f"{self.path}: line {number} is not JSON (and is not the last line, "
                        "so it is not a torn write); fix or remove the file"
                    ) from None
                print(
                    f"jaxfm: warning: {self.path}: line {number} is a torn record "
                    "(the previous run was killed while writing it); dropped",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            if record.get("step", 0) <= step:
                lines.append(ln)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(lines)
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Flushes and closes TensorBoard output."""
        if self._tb is not None:
            self._tb.close()


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m', 125 -> '2m05s', 7.3 -> '7.3s'."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """Step timing and ETA that ignore the first (compiling) step.

    Args:
      total_steps: the last step of the run.
      start_step: the step the run (re)started at.
      examples_per_step: global batch size, for examples/s.
      enabled: print the line (process 0 with ``train.progress``).
    """

    def __init__(
        self,
        total_steps: int,
        start_step: int,
        examples_per_step: int,
        *,
        enabled: bool = True,
        stream=None,
    ):
        self.total, self.start = total_steps, start_step
        self.examples = examples_per_step
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self._t0: float | None = None  # time when the first step finished
        self._s0 = start_step
        self._last_t = time.perf_counter()
        self._last_step = start_step
        self.compile_s: float | None = None
        self._begin = time.perf_counter()

    def tick(self, step: int) -> dict[str, float]:
        """Call when ``step`` is known to be finished; returns timing metrics for the log."""
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._s0 = now, step
            self.compile_s = now - self._begin
        dt = (now - self._last_t) / max(step - self._last_step, 1)
        self._last_t, self._last_step = now, step
        return {"step_time_s": dt, "examples_per_s": self.examples / dt if dt > 0 else 0.0}

    def eta_s(self, step: int) -> float:
        """Seconds left, from the steady-state rate since the first finished step."""
        if self._t0 is None or step <= self._s0:
            return math.nan
        rate = (time.perf_counter() - self._t0) / (step - self._s0)
        return rate * (self.total - step)

    def show(self, step: int, metrics: dict[str, Any]) -> None:
        """Prints ``step/total | loss | ex/s | s/step | ETA``."""
        if not self.enabled:
            return
        parts = [f"step {step}/{self.total}"]
        for key in ("loss", "eval/loss"):
            if key in metrics:
                parts.append(f"{key} {float(metrics[key]):.4g}")
        if "examples_per_s" in metrics:
            parts.append(f"{metrics['examples_per_s']:.1f} ex/s")
            parts.append(f"{metrics['step_time_s']:.3g} s/step")
        parts.append(f"ETA {format_duration(self.eta_s(step))}")
        print(" | ".join(parts), file=self.stream, flush=True)
