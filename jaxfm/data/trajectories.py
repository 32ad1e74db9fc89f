"""The in-memory form shared by simulators, The Well reader and the PDEBench readers.

One :class:`TrajectorySet` holds every trajectory of one system at one parameter setting:

* ``data``: float32 ``(n_traj, n_steps, *spatial, n_fields)``, channels last. Vector fields are
  stored component by component with a ``_x`` / ``_y`` (/ ``_z``) suffix (``velocity_x``,
  ``velocity_y``); The Well writer groups such channels back into ``t1_fields``.
* ``field_names``: one name per channel; names are keys of the field registry
  (:mod:`jaxfm.data.fields`), so the same physical field shares an embedding row across systems.
* ``dt``: time between stored frames (simulation units); ``coords``: cell-centre coordinates of
  each spatial axis; ``bc``: one of ``periodic`` / ``wall`` / ``open`` per axis (The Well names).
* ``params``: per-trajectory randomised parameters, each ``(n_traj,)`` float;
  ``constants``: settings shared by all trajectories (solver, CFL, seed, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

BC_TYPES = ("periodic", "wall", "open")
"""Boundary-condition names, as in The Well (its enum: WALL 0, OPEN 1, PERIODIC 2)."""


@dataclasses.dataclass(frozen=True, eq=False)
class TrajectorySet:
    """A stack of trajectories of one system, channels last (see the module docstring).

    Attributes:
        system: system name, e.g. ``"shallow_water"``.
        data: float32 array ``(n_traj, n_steps, *spatial, n_fields)``.
        field_names: one name per channel.
        dt: time between stored frames.
        coords: cell-centre coordinates, one 1-D array per spatial axis.
        bc: boundary condition per spatial axis (``periodic``, ``wall`` or ``open``).
        params: per-trajectory parameters, name -> ``(n_traj,)`` array.
        constants: settings shared by every trajectory (JSON-serialisable scalars/strings).
        axis_names: names of the spatial axes (``x``, ``y``, ``z``).
    """

    system: str
    data: np.ndarray
    field_names: tuple[str, ...]
    dt: float
    coords: tuple[np.ndarray, ...]
    bc: tuple[str, ...]
    params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    axis_names: tuple[str, ...] = ()

    def __post_init__(self):
        data = np.asarray(self.data)
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        object.__setattr__(self, "data", data)
        n_sp = data.ndim - 3
        if n_sp < 1:
            raise ValueError(
                f"{self.system}: data must be (n_traj, n_steps, *spatial, n_fields), "
                f"got shape {data.shape}"
            )
        object.__setattr__(self, "field_names", tuple(self.field_names))
        if len(self.field_names) != data.shape[-1]:
            raise ValueError(
                f"{self.system}: {len(self.field_names)} field names {self.field_names} for "
                f"{data.shape[-1]} channels"
            )
        if not self.axis_names:
            object.__setattr__(self, "axis_names", ("x", "y", "z")[:n_sp])
        coords = tuple(np.asarray(c, np.float32) for c in self.coords)
        object.__setattr__(self, "coords", coords)
        if tuple(len(c) for c in coords) != data.shape[2:-1]:
            raise ValueError(
                f"{self.system}: coordinate lengths {[len(c) for c in coords]} do not match "
                f"spatial shape {data.shape[2:-1]}"
            )
        object.__setattr__(self, "bc", tuple(self.bc))
        if len(self.bc) != n_sp or any(b not in BC_TYPES for b in self.bc):
            raise ValueError(f"{self.system}: bc must be {n_sp} of {BC_TYPES}, got {self.bc}")
        params = {k: np.asarray(v, np.float64).reshape(-1) for k, v in self.params.items()}
        for k, v in params.items():
            if v.shape != (data.shape[0],):
                raise ValueError(
                    f"{self.system}: parameter {k!r} has shape {v.shape}, expected "
                    f"({data.shape[0]},) (one value per trajectory)"
                )
        object.__setattr__(self, "params", params)

    @property
    def n_traj(self) -> int:
        """Number of trajectories."""
        return self.data.shape[0]

    @property
    def n_steps(self) -> int:
        """Number of stored frames per trajectory."""
        return self.data.shape[1]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Grid shape."""
        return tuple(self.data.shape[2:-1])

    @property
    def n_spatial_dims(self) -> int:
        """1, 2 or 3."""
        return self.data.ndim - 3

    @property
    def time(self) -> np.ndarray:
        """Frame times ``dt * arange(n_steps)``, float32."""
        return (self.dt * np.arange(self.n_steps)).astype(np.float32)

    def subset(self, index) -> TrajectorySet:
        """Trajectories selected by ``index`` (slice or integer array), parameters included."""
        idx = np.arange(self.n_traj)[index]
        return dataclasses.replace(
            self,
            data=self.data[idx],
            params={k: v[idx] for k, v in self.params.items()},
        )

    def check_finite(self, source: str = "") -> None:
        """Raise ``ValueError`` naming the first trajectory (and frame) with NaN or Inf.

        Args:
            source: file name or other origin, put in the message.
        """
        bad = ~np.isfinite(self.data)
        if bad.any():
            per_traj = bad.reshape(self.n_traj, self.n_steps, -1).any(-1)
            traj = int(np.argmax(per_traj.any(1)))
            step = int(np.argmax(per_traj[traj]))
            n_bad = int(per_traj.any(1).sum())
            where = f"{source}: " if source else ""
            raise ValueError(
                f"{where}{self.system}: non-finite values (NaN/Inf) in trajectory {traj} "
                f"(first at frame {step}); {n_bad} of {self.n_traj} trajectories affected"
            )


def concat(sets: list[TrajectorySet]) -> TrajectorySet:
    """Stack trajectory sets of one system along the trajectory axis.

    Constants that differ between the parts (e.g. the seed of each chunk) become lists.
    """
    if not sets:
        raise ValueError("concat needs at least one TrajectorySet")
    first = sets[0]
    for s in sets[1:]:
        if (s.system, s.field_names, s.data.shape[1:]) != (
            first.system,
            first.field_names,
            first.data.shape[1:],
        ):
            raise ValueError(
                f"cannot concatenate {s.system} {s.field_names} {s.data.shape} with "
                f"{first.system} {first.field_names} {first.data.shape}"
            )
    constants = {}
    for k in first.constants:
        values = [s.constants.get(k) for s in sets]
        constants[k] = values[0] if all(v == values[0] for v in values) else values
    return dataclasses.replace(
        first,
        data=np.concatenate([s.data for s in sets]),
        params={k: np.concatenate([s.params[k] for s in sets]) for k in first.params},
        constants=constants,
    )
