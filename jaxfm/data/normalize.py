"""Per-field normalisation statistics, computed once on the train split and stored on disk.

For every channel ``c``: ``mean``, ``std`` and ``rms`` (root mean square) over all
trajectories, frames and grid points of the train split, and ``mean_delta``, ``std_delta``,
``rms_delta`` of the frame-to-frame difference, accumulated in float64. These are the keys of
The Well's ``stats.yaml``, which its ``ZScoreNormalization`` (mean, std and the delta pair) and
``RMSNormalization`` (rms, rms_delta) read.

On disk (:meth:`FieldStats.save`) the statistics are YAML, one entry per *Well field*, as The
Well writes them: a number for a scalar field, a list per component for a vector field
(``velocity: [vx, vy]``), nested lists for a tensor field (``D: [[xx, xy], [yx, yy]]``). In
memory (:attr:`FieldStats.stats`) they are one entry per *channel* (``velocity_x``), which is
how :class:`Normalizer` applies them. :meth:`FieldStats.load` reads both The Well's files and
the older per-channel files jaxfm wrote (JSON, without ``rms``: it follows from
``rms² = mean² + std²``). A time-constant field of The Well has no delta statistics.

The same :class:`FieldStats` normalise every split (train, valid, test): there is deliberately
no code path that computes statistics from the split being normalised (a normalisation dropped
on val/test is a bug The Well once had). ``std`` is floored at ``1e-6 · (|mean| + 1)`` so a
constant field does not divide by zero.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import grain.python as grain
import numpy as np
import yaml

from jaxfm.data.trajectories import TrajectorySet
from jaxfm.data.well import well_fields

KEYS = ("mean", "std", "rms", "mean_delta", "std_delta", "rms_delta")
"""Statistics stored per channel."""

REQUIRED = ("mean", "std", "mean_delta", "std_delta")
"""Keys a statistics file must have (``rms`` / ``rms_delta`` are derived when absent)."""

_RMS_FROM = {"rms": ("mean", "std"), "rms_delta": ("mean_delta", "std_delta")}


def _per_channel(values: dict) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """``{channel: value}`` with The Well's per-field component lists expanded to channels,
    and the field each channel came from (``{field: channel names, shaped as its value}``).

    A vector field's list ``[vx, vy]`` becomes ``name_x``, ``name_y``; a tensor field's nested
    ``[[xx, xy], [yx, yy]]`` becomes ``name_xx``, ``name_xy``, ... (axes named x, y, z).
    """
    out, fields = {}, {}
    for name, v in values.items():
        a = np.asarray(v, np.float64)
        names = np.empty(a.shape, object)
        for comp in np.ndindex(*a.shape):
            suffix = "".join("xyz"[c] for c in comp)
            names[comp] = f"{name}_{suffix}" if comp else name
            out[names[comp]] = float(a[comp])
        fields[name] = names
    return out, fields


class FieldStats:
    """Per-channel statistics, saved per Well field (see the module docstring).

    Args:
        stats: ``{key: {name: value}}`` for every key of :data:`REQUIRED` (and optionally
            ``rms``, ``rms_delta``); names are channels with float values, or Well fields with
            their component lists.
        fields: ``{Well field: array of its channel names}`` for :meth:`save`; by default the
            fields of ``stats`` as given (a channel given on its own is a field of its own).
    """

    def __init__(self, stats: dict[str, dict], fields: dict[str, np.ndarray] | None = None):
        for k in REQUIRED:
            if k not in stats:
                raise ValueError(f"field statistics need key {k!r}, got {sorted(stats)}")
        self.stats, found = {}, {}
        for k in KEYS:
            if k in stats:
                self.stats[k], seen = _per_channel(stats[k])
                found.update(seen)
        for k, (mk, sk) in _RMS_FROM.items():
            if k not in self.stats:
                m, s = self.stats[mk], self.stats[sk]
                self.stats[k] = {n: float(np.hypot(m[n], s[n])) for n in m if n in s}
        self.fields = dict(fields) if fields is not None else found

    def __repr__(self) -> str:
        return f"FieldStats(channels={sorted(self.stats['mean'])})"

    @classmethod
    def from_trajectories(cls, ts: TrajectorySet) -> FieldStats:
        """Statistics of every channel of ``ts`` (use the train split only)."""
        d = ts.data.astype(np.float64)
        delta = np.diff(d, axis=1)
        out = {k: {} for k in KEYS}
        for i, n in enumerate(ts.field_names):
            for suffix, a in (("", d[..., i]), ("_delta", delta[..., i])):
                empty = a.size == 0
                out[f"mean{suffix}"][n] = 0.0 if empty else float(a.mean())
                out[f"std{suffix}"][n] = 0.0 if empty else float(a.std())
                out[f"rms{suffix}"][n] = 0.0 if empty else float(np.sqrt(np.mean(a * a)))
        names = np.asarray(ts.field_names, object)
        fields = {w.name: names[w.channels] for w in well_fields(ts.field_names, ts.axis_names)}
        return cls(out, fields)

    def well_stats(self) -> dict[str, dict]:
        """``{key: {Well field: number or (nested) list}}``, as The Well's ``stats.yaml``.

        A field is left out of a key that lacks one of its channels (e.g. the delta statistics
        of a time-constant field).
        """
        out = {}
        for k in KEYS:
            table = self.stats[k]
            out[k] = {
                field: np.vectorize(table.get, otypes=[float])(names).tolist()
                for field, names in self.fields.items()
                if all(n in table for n in np.ravel(names))
            }
        return out

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
        """Write :meth:`well_stats` as YAML to ``path``, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(yaml.safe_dump(self.well_stats(), sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FieldStats:
        """Read a file written by :meth:`save`, by The Well, or by older jaxfm (JSON)."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: statistics file not found") from None
        try:
            # JSON first: PyYAML reads JSON's `1e-05` (no dot) as a string.
            obj = json.loads(text)
        except json.JSONDecodeError:
            try:
                obj = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not a YAML statistics file ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: statistics must be a mapping, got {type(obj).__name__}")
        missing = [k for k in REQUIRED if k not in obj]
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
