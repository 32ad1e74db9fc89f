"""Evaluation windows of several systems: the whole split, or the same number per system.

An eval set built by concatenating per-system window sources is ordered system by system, and
each source trajectory by trajectory. Scoring the head of that stream (the first N batches)
measures the first system only. :class:`StratifiedWindows` instead scores either every window
of every system, or ``per_system`` windows of each, spread evenly over the flat (trajectory,
start frame) index of that system, so every trajectory and every part of a trajectory is
represented, and the choice is a pure function of the sources' sizes (no RNG, identical on
every process and every run).

Window ``j`` of ``k`` chosen from a source of ``n`` is ``floor((j + 1/2) · n / k)``: the
midpoints of ``k`` equal slices of the index. With ``k = m · n_traj`` that is ``m`` windows per
trajectory at the same evenly spread start frames.

Examples are optionally padded to ``pad`` channels (``field_ids`` -1, ``field_mask``), as
:class:`jaxfm.data.mixture.MixtureWindows` pads training examples, so one batch can hold
windows of systems with different numbers of fields.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spread_indices(n: int, k: int) -> np.ndarray:
    """``k`` indices in ``[0, n)`` at the midpoints of ``k`` equal slices (all when k >= n)."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


def pad_example(el: dict, k: int) -> dict:
    """Zero-pads x/y to ``k`` channels, field ids with -1, and adds ``field_mask (k,)``."""
    el = dict(el)
    c = el["x"].shape[-1]
    if c > k:
        raise ValueError(f"example has {c} fields but data.pad_fields = {k}; raise pad_fields")
    pad = [(0, 0)] * (el["x"].ndim - 1) + [(0, k - c)]
    el["x"], el["y"] = np.pad(el["x"], pad), np.pad(el["y"], pad)
    el["field_ids"] = np.pad(el["field_ids"], (0, k - c), constant_values=-1)
    el["field_mask"] = np.arange(k) < c
    return el


class StratifiedWindows:
    """Random-access eval windows of several systems (see module docstring).

    Args:
      sources: one window source per system (``len``, ``[i]``; ``.system`` names it).
      per_system: windows taken from each source (0: all of them; a source with fewer
        contributes all it has).
      pad: pad every example to this many channels (None: as the source gives them).
    """

    def __init__(self, sources: Sequence, per_system: int = 0, pad: int | None = None):
        if not sources:
            raise ValueError("StratifiedWindows needs at least one source")
        if per_system < 0:
            raise ValueError(f"per_system must be >= 0 (0: every window), got {per_system}")
        empty = [repr(s) for s in sources if len(s) == 0]
        if empty:
            raise ValueError(f"eval source without windows: {empty[0]}")
        self.sources, self.per_system, self.pad = list(sources), per_system, pad
        self.indices = [spread_indices(len(s), per_system) for s in self.sources]
        self.offsets = np.cumsum([0] + [len(ix) for ix in self.indices])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return (
            f"StratifiedWindows({[repr(s) for s in self.sources]}, "
            f"per_system={self.per_system}, pad={self.pad})"
        )

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range [0, {len(self)}) for {self!r}")
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        el = self.sources[k][int(self.indices[k][i - int(self.offsets[k])])]
        return el if self.pad is None else pad_example(el, self.pad)

    @property
    def systems(self) -> list[str]:
        """System name of each source (its index when it has none)."""
        return [str(getattr(s, "system", i)) for i, s in enumerate(self.sources)]

    @property
    def counts(self) -> dict[str, int]:
        """System name -> windows scored."""
        return {name: len(ix) for name, ix in zip(self.systems, self.indices)}

    def limit(self, n_windows: int) -> StratifiedWindows:
        """At most ``n_windows`` windows in all, split equally over the systems (at least one
        each): how a cap on eval batches becomes a stratified sample instead of a head."""
        per = max(1, n_windows // len(self.sources))
        if self.per_system:
            per = min(per, self.per_system)
        if per >= max(len(s) for s in self.sources):
            return self
        return StratifiedWindows(self.sources, per, self.pad)

    def describe(self) -> str:
        """'4 systems x 32 windows = 128 windows' (or each system's count when they differ)."""
        counts = self.counts
        n = len(counts)
        label = "system" if n == 1 else "systems"
        sizes = set(counts.values())
        if len(sizes) == 1:
            return f"{n} {label} x {sizes.pop()} windows = {len(self)} windows"
        each = ", ".join(f"{k} {v}" for k, v in counts.items())
        return f"{n} {label}, {len(self)} windows ({each})"
