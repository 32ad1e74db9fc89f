"""What a benchmark or study records next to its numbers: code version, library versions,
compiled memory. One place, so every JSON result carries the same fields."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_sha() -> str:
    """HEAD of the jaxfm checkout ("unknown" outside a git tree), with "+dirty" when the
    working tree has uncommitted changes (the numbers then come from code no commit holds)."""
    try:
        run = lambda *a: subprocess.run(
            ["git", *a], cwd=_ROOT, capture_output=True, text=True, timeout=10
        )
        sha = run("rev-parse", "HEAD").stdout.strip()
        if not sha:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str | None]:
    """Python and the numerical libraries' versions (None for one not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("jax", "jaxlib", "flax", "optax"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", None)
        except ImportError:
            out[mod] = None
    return out


def compiled_peak_bytes(compiled: Any) -> int | None:
    """Peak memory of a compiled executable by XLA's memory analysis: arguments + outputs +
    temporaries - aliased buffers. None where the backend does not report it."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
