"""SIGTERM outside the training loop: stop at once, say what was happening, exit 143.

A scheduler's pre-emption notice can arrive in any phase of a run: while data are simulated
or loaded and the model compiled, inside the training loop, or afterwards while the trained
model is evaluated and plotted. Every phase keeps one contract: finish or save what can be
saved, say so in one line, and exit with status 143 (128 + SIGTERM, what a shell reports for
a terminated job) so that a chain of commands stops there.

* The training loop (:func:`jaxfm.train.run`) takes SIGTERM over while it runs: it finishes
  the current step, saves a checkpoint and raises :class:`jaxfm.train.Preempted`.
* Everywhere else, :func:`exit_on_sigterm` (installed by :func:`jaxfm.config.run_cli` around
  every experiment script) raises :class:`Terminated` where the signal lands. Nothing is
  half-written by that: every file jaxfm writes outside Orbax (caches, JSON, normalisation
  statistics) is written to a temporary name and renamed, so stopping mid-write leaves the
  old file or none.
* :func:`stage` names what is running (``with stage("evaluating rollouts", ...)``), so the
  message says what was stopped and what is already saved.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_STATUS = 143
"""128 + SIGTERM: what a shell reports for a job ended by SIGTERM."""

_STAGES: list[tuple[str, str]] = []


class Terminated(SystemExit):
    """SIGTERM outside the training loop; ``message`` says where and what is saved."""

    def __init__(self, message: str):
        super().__init__(EXIT_STATUS)
        self.message = message


@contextlib.contextmanager
def stage(doing: str, saved: str = "") -> Iterator[None]:
    """Names the phase that runs inside the block for a SIGTERM message.

    Args:
      doing: what runs, e.g. ``"evaluating rollouts"``.
      saved: what is already safe on disk, e.g. ``"the trained model is saved in W"``.
    """
    _STAGES.append((doing, saved))
    try:
        yield
    finally:
        _STAGES.pop()


def describe() -> str:
    """The one-line message for a SIGTERM received now."""
    doing, saved = _STAGES[-1] if _STAGES else ("before training started", "")
    what = f"{saved}; " if saved else "nothing was half-written; "
    return f"SIGTERM {doing}: stopped ({what}rerun the same command to continue)"


def _raise(signum, frame):
    del signum, frame
    raise Terminated(describe())


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (main thread only: Python
    delivers signals there; elsewhere the block changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
