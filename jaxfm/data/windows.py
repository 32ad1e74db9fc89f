"""Windowing: trajectories -> (input frames, target frames) samples for surrogate training.

A :class:`WindowSource` is a plain random-access source (``__len__``, ``__getitem__``, a stable
``__repr__``) over one system's trajectories, held in memory (:class:`TrajectorySet`) or read
lazily from a file (:class:`jaxfm.data.well.WellFile`, :class:`jaxfm.data.pdebench.PDEBenchFile`
or a slice/concatenation of them from :mod:`jaxfm.data.catalog`: anything with ``read(traj,
start, stop, stride)``, opened per process, so the source pickles into Grain worker processes).
It plugs into ``grain.MapDataset.source(...)``.

Window ``i`` of trajectory ``j`` starts at frame ``s`` and uses frames
``s, s + stride, ..., s + (n_steps_input + n_steps_output - 1) · stride``; there are
``n_steps - (n_steps_input + n_steps_output - 1) · stride`` windows per trajectory, indexed
trajectory-major.

Each element is a dict of numpy arrays::

    "x":          float32 (n_steps_input,  *spatial, C)   input frames (normalised if stats given)
    "y":          float32 (n_steps_output, *spatial, C)   next frame(s)
    "field_ids":  int32   (C,)                            field-registry ids of the channels
    "system":     int32   ()                              system-registry id
    "traj":       int32   ()                              trajectory index in the source
    "start":      int32   ()                              first frame of the window

(2-D systems: ``*spatial = (H, W)``.)
"""

from __future__ import annotations

import numpy as np

from jaxfm.data.fields import NameRegistry, default_field_registry, default_system_registry
from jaxfm.data.normalize import FieldStats, Normalizer
from jaxfm.data.trajectories import TrajectorySet
from jaxfm.data.well import WellFile


class WindowSource:
    """Random-access windows over one system's trajectories.

    Args:
        data: a :class:`TrajectorySet` (in memory) or a lazy trajectory file (``WellFile``,
            ``PDEBenchFile``, ...: ``n_traj``, ``n_steps``, ``field_names``, ``system``,
            ``read(traj, start, stop, stride)``, ``check_finite()``).
        n_steps_input: input frames per window.
        n_steps_output: target frames per window (1 = next frame; n = rollout targets).
        stride: time stride between consecutive frames of a window.
        stats: statistics of the train split; when given, ``x`` and ``y`` are z-scored with
            them (identically for every split).
        fields: field registry (default: :func:`default_field_registry`); unknown names raise.
        systems: system registry (default: :func:`default_system_registry`).
        check_finite: scan the data once and raise on NaN/Inf, naming the trajectory.
    """

    def __init__(
        self,
        data: TrajectorySet | WellFile,
        n_steps_input: int = 4,
        n_steps_output: int = 1,
        stride: int = 1,
        stats: FieldStats | None = None,
        fields: NameRegistry | None = None,
        systems: NameRegistry | None = None,
        check_finite: bool = True,
    ):
        if n_steps_input < 1 or n_steps_output < 1 or stride < 1:
            raise ValueError(
                f"n_steps_input ({n_steps_input}), n_steps_output ({n_steps_output}) and "
                f"stride ({stride}) must be >= 1"
            )
        self.data = data
        self.n_steps_input, self.n_steps_output, self.stride = n_steps_input, n_steps_output, stride
        self.span = (n_steps_input + n_steps_output - 1) * stride + 1
        self.per_traj = data.n_steps - self.span + 1
        if self.per_traj < 1:
            raise ValueError(
                f"{self._name()}: {data.n_steps} frames per trajectory, but a window needs "
                f"{self.span} ((n_steps_input + n_steps_output - 1) * stride + 1)"
            )
        fields = fields or default_field_registry()
        systems = systems or default_system_registry()
        self.field_ids = fields.ids(data.field_names)
        self.system_id = np.int32(systems.id(data.system))
        self.normalizer = Normalizer(stats, data.field_names) if stats is not None else None
        if check_finite:
            data.check_finite()

    def _name(self) -> str:
        return str(getattr(self.data, "path", self.data.system))

    @property
    def field_names(self) -> tuple[str, ...]:
        """Channel names, in the order of the last axis."""
        return tuple(self.data.field_names)

    @property
    def system(self) -> str:
        """System name."""
        return self.data.system

    def __len__(self) -> int:
        return self.data.n_traj * self.per_traj

    def __repr__(self) -> str:
        return (
            f"WindowSource({self._name()!r}, n_traj={self.data.n_traj}, "
            f"n_steps_input={self.n_steps_input}, n_steps_output={self.n_steps_output}, "
            f"stride={self.stride}, normalized={self.normalizer is not None})"
        )

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{self!r}: index {index} out of range [0, {len(self)})")
        traj, start = divmod(index, self.per_traj)
        if isinstance(self.data, TrajectorySet):
            frames = self.data.data[traj, start : start + self.span : self.stride]
        else:
            frames = self.data.read(traj, start, start + self.span, self.stride)
        if self.normalizer is not None:
            frames = self.normalizer(frames)
        frames = np.asarray(frames, np.float32)
        return {
            "x": frames[: self.n_steps_input],
            "y": frames[self.n_steps_input :],
            "field_ids": self.field_ids,
            "system": self.system_id,
            "traj": np.int32(traj),
            "start": np.int32(start),
        }


class ConcatWindows:
    """The windows of several sources of one system, one after another (e.g. the same
    trajectories at several time strides); random access, like each source."""

    def __init__(self, sources):
        if not sources:
            raise ValueError("ConcatWindows needs at least one source")
        names = {(s.system, tuple(s.field_names)) for s in sources}
        if len(names) > 1:
            raise ValueError(f"ConcatWindows joins one system's sources, got {sorted(names)}")
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    @property
    def field_names(self) -> tuple[str, ...]:
        """Channel names (shared by every source)."""
        return tuple(self.sources[0].field_names)

    @property
    def system(self) -> str:
        """System name."""
        return self.sources[0].system

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"ConcatWindows({[repr(s) for s in self.sources]})"

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{self!r}: index {index} out of range [0, {len(self)})")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.sources[k][index - int(self.offsets[k])]
