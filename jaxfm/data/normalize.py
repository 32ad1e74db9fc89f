"""Per-field normalisation statistics, computed once on the train split and stored on disk.

For every channel ``c``: ``mean``, ``std`` over all trajectories, frames and grid points of the
train split, and ``mean_delta``, ``std_delta`` of the frame-to-frame difference (The Well's
``stats.yaml`` keys; its vector fields hold one list per field, ours one entry per channel name,
e.g. ``velocity_x``). Statistics are accumulated in float64.

The same :class:`FieldStats` normalise every split (train, valid, test): there is deliberately
no code path that computes statistics from the split being normalised (The Well issue #68 was a
dropped normalisation on val/test). ``std`` is floored at ``1e-6 · (|mean| + 1)`` so a constant
field does not divide by zero.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import grain.python as grain
import numpy as np

from jaxfm.data.trajectories import TrajectorySet

KEYS = ("mean", "std", "mean_delta", "std_delta")
"""Statistics stored per channel."""


class FieldStats:
    """Per-channel statistics.

    Args:
        stats: ``{key: {channel: float}}`` for every key of :data:`KEYS`.
    """

    def __init__(self, stats: dict[str, dict[str, float]]):
        for k in KEYS:
            if k not in stats:
                raise ValueError(f"field statistics need key {k!r}, got {sorted(stats)}")
        self.stats = {k: {n: float(v) for n, v in stats[k].items()} for k in KEYS}

    def __repr__(self) -> str:
        return f"FieldStats(channels={sorted(self.stats['mean'])})"

    @classmethod
    def from_trajectories(cls, ts: TrajectorySet) -> FieldStats:
        """Statistics of every channel of ``ts`` (use the train split only)."""
        d = ts.data.astype(np.float64)
        delta = np.diff(d, axis=1)
        out = {k: {} for k in KEYS}
        for i, n in enumerate(ts.field_names):
            out["mean"][n] = d[..., i].mean()
            out["std"][n] = d[..., i].std()
            out["mean_delta"][n] = delta[..., i].mean() if delta.size else 0.0
            out["std_delta"][n] = delta[..., i].std() if delta.size else 0.0
        return cls(out)

    def arrays(self, field_names, delta: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``(mean, std)`` vectors for ``field_names`` (std floored, see module doc)."""
        mk, sk = ("mean_delta", "std_delta") if delta else ("mean", "std")
        missing = [n for n in field_names if n not in self.stats[mk]]
        if missing:
            raise KeyError(f"no statistics for channels {missing}; have {sorted(self.stats[mk])}")
        mean = np.array([self.stats[mk][n] for n in field_names])
        std = np.array([self.stats[sk][n] for n in field_names])
        std = np.maximum(std, 1e-6 * (np.abs(mean) + 1))
        return mean.astype(np.float32), std.astype(np.float32)

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (also valid YAML) to ``path``, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.stats, indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FieldStats:
        """Read a file written by :meth:`save` (or any JSON/YAML with the same keys)."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: statistics file not found") from None
        except json.JSONDecodeError:
            import yaml  # The Well writes real YAML; ours is JSON.

            obj = yaml.safe_load(path.read_text())
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: statistics must be a mapping, got {type(obj).__name__}")
        missing = [k for k in KEYS if k not in obj]
        if missing:
            raise ValueError(f"{path}: missing key {missing[0]!r} in statistics")
        return cls(obj)


class Normalizer:
    """z-scores channels: ``(x - mean) / std``, and back.

    Args:
        stats: stored statistics (of the train split).
        field_names: channel names, in the order of the last axis.
    """

    def __init__(self, stats: FieldStats, field_names):
        self.field_names = tuple(field_names)
        self.mean, self.std = stats.arrays(self.field_names)

    def __repr__(self) -> str:
        return f"Normalizer(fields={self.field_names})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise ``x`` (``(..., C)``), float32."""
        return ((x - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Undo :meth:`__call__`."""
        return (z * self.std + self.mean).astype(np.float32)


class NormalizeWindow(grain.MapTransform):
    """Grain transform: normalise ``x`` and ``y`` of a window dict with one :class:`Normalizer`."""

    def __init__(self, normalizer: Normalizer):
        self.normalizer = normalizer

    def map(self, element: dict) -> dict:
        """Return a copy of ``element`` with ``x`` and ``y`` normalised."""
        out = dict(element)
        out["x"] = self.normalizer(element["x"])
        out["y"] = self.normalizer(element["y"])
        return out
