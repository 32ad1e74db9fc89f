"""What a benchmark or study records next to its numbers: code version, library versions,
compiled memory. One place, so every JSON result carries the same fields."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from typing import Any

import numpy as np

from jaxfm.atomic import atomic_path

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


def dot_dtypes(stablehlo: str) -> dict[str, int]:
    """How many ``dot_general`` ops of a lowered program take which operand dtypes, e.g.
    ``{"bf16xbf16": 122, "f32xbf16": 12}``: whether the matmuls run in the compute dtype."""
    pairs = re.findall(
        r"stablehlo\.dot_general.*?: \(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\)", stablehlo
    )
    out: dict[str, int] = {}
    for a, b in pairs:
        out[f"{a}x{b}"] = out.get(f"{a}x{b}", 0) + 1
    return out


#: The four files every study directory holds (``results/<study>/`` in the repository).
STUDY_FILES = ("command.txt", "config.json", "results.json", "report.md")


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, rerunnable from the repository root:
    ``python -m PACKAGE.MODULE ARGS`` for a module run with ``-m`` (``sys.argv[0]`` is then a
    file path), ``python ARGV...`` otherwise."""
    argv = list(sys.argv if argv is None else argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        head = ["python", "-m", spec.name.removesuffix(".__main__")]
    else:
        head = ["python", argv[0] if argv else "?"]
    return shlex.join(head + argv[1:])


def write_study(
    directory: str,
    *,
    command: str,
    config: Any,
    results: dict,
    report: str,
) -> dict[str, str]:
    """Writes a study's four files into ``directory``: command.txt (the rerunnable command),
    config.json (``config``: a dataclass or a dict), results.json (``results``, which should
    hold every number report.md prints) and report.md. Returns name -> path."""
    os.makedirs(directory, exist_ok=True)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        from jaxfm.config import to_dict  # light module; what the engine writes as config.json

        config = to_dict(config)
    texts = {
        "command.txt": command.strip() + "\n",
        "config.json": json.dumps(config, indent=2, default=str) + "\n",
        "results.json": json.dumps(results, indent=2, default=_json_default) + "\n",
        "report.md": report if report.endswith("\n") else report + "\n",
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = os.path.join(directory, name)
        with atomic_path(paths[name]) as tmp, open(tmp, "w") as f:
            f.write(text)
    return paths


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_report(directory: str, lines: list[str], command: str) -> str:
    """Writes ``lines`` and the command that made them to ``directory/report.md``; its path."""
    path = os.path.join(directory, "report.md")
    with open(path, "w") as f:
        f.write("\n".join([*lines, "", f"Command: `{command}`"]) + "\n")
    return path
