"""Miniature files laid out as The Well writes them (``docs/data_format.md`` of the_well).

Each ``write_*`` function writes a tiny random file shaped like one Well dataset and returns a
:class:`Miniature` with the arrays it wrote, so reader tests compare channel by channel. None of
them carries a ``jaxfm_*`` attribute. What each one exercises:

* :func:`write_shear_flow`: t0 + t1 fields, sample-invariant constant scalars (shape ``()``),
  both axes periodic.
* :func:`write_turbulent_radiative_layer_2d`: per-trajectory time ``(B, T)`` (own start time,
  common step), a time-varying scalar ``(B, T)``, x periodic / y open.
* :func:`write_active_matter`: t2 (tensor) fields ``(B, T, X, Y, 2, 2)``.
* :func:`write_acoustic_scattering_maze`: constant fields (``time_varying=False``, ``(B, X, Y)``),
  a sample-invariant time-varying scalar ``(T,)``, open and wall boundaries.
* :func:`write_rayleigh_benard`: x periodic; on y a wall at the bottom face and, unlike the real
  dataset (walls on both faces), an open lid on the top face, so the two faces of one axis
  differ.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np


@dataclasses.dataclass
class Miniature:
    """What a miniature file holds, as the reader should return it."""

    path: Path
    variable: dict[str, np.ndarray]
    """Time-varying channels ``(B, T, *spatial)``, in The Well's channel order."""
    constant: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Time-constant channels ``(B, *spatial)``."""
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    """Time-constant scalars."""
    scalars: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Time-varying scalars ``(B, T)``."""
    time: np.ndarray | None = None
    """Frame times ``(B, T)``."""
    bc: tuple[str, ...] = ()
    bc_faces: tuple[tuple[str, str], ...] = ()


def _flags(obj, sample: bool, time: bool) -> None:
    obj.attrs["sample_varying"] = sample
    obj.attrs["time_varying"] = time


def _root(f, name, n_traj, params: dict[str, float]) -> None:
    f.attrs["dataset_name"] = name
    f.attrs["grid_type"] = "cartesian"
    f.attrs["n_spatial_dims"] = 2
    f.attrs["n_trajectories"] = n_traj
    f.attrs["simulation_parameters"] = list(params)
    for k, v in params.items():
        f.attrs[k] = v


def _dimensions(f, shape, time: np.ndarray) -> None:
    g = f.create_group("dimensions")
    g.attrs["spatial_dims"] = ["x", "y"]
    t = g.create_dataset("time", data=time.astype(np.float32))
    _flags(t, time.ndim == 2, True)
    for name, n in zip(("x", "y"), shape):
        d = g.create_dataset(name, data=np.linspace(0, 1, n, endpoint=False, dtype=np.float32))
        _flags(d, False, False)


def _boundary(f, name, kind, axis, n, faces=(0, -1)) -> None:
    g = f.require_group("boundary_conditions").create_group(name)
    g.attrs["associated_dims"] = [axis]
    g.attrs["associated_fields"] = []
    g.attrs["bc_type"] = kind
    _flags(g, False, False)
    mask = np.zeros(n, bool)
    mask[list(faces)] = True
    g.create_dataset("mask", data=mask)
    g.create_dataset("values", data=np.zeros(int(mask.sum()), np.float32))


def _scalars(f, constant: dict[str, float], varying: dict[str, tuple[np.ndarray, bool]]) -> None:
    g = f.create_group("scalars")
    g.attrs["field_names"] = [*constant, *varying]
    for k, v in constant.items():
        _flags(g.create_dataset(k, data=np.float32(v)), False, False)
    for k, (v, per_sample) in varying.items():
        _flags(g.create_dataset(k, data=v.astype(np.float32)), per_sample, True)


def _fields(f, order: int, fields: dict[str, np.ndarray], time_varying=True) -> None:
    g = f.require_group(f"t{order}_fields")
    names = list(g.attrs.get("field_names", [])) + list(fields)
    g.attrs["field_names"] = names
    for k, v in fields.items():
        d = g.create_dataset(k, data=v.astype(np.float32))
        d.attrs["dim_varying"] = [True, True]
        _flags(d, True, time_varying)
        if order == 2:
            d.attrs["symmetric"] = False
            d.attrs["antisymmetric"] = False


def _empty_groups(f) -> None:
    for i in range(3):
        g = f.require_group(f"t{i}_fields")
        if "field_names" not in g.attrs:
            g.attrs["field_names"] = []


def _channels(fields: dict[str, np.ndarray], order: int) -> dict[str, np.ndarray]:
    """The Well's flattening: ``name`` (t0), ``name_x`` ... (t1), ``name_xy`` ... (t2)."""
    out = {}
    for k, v in fields.items():
        for comp in np.ndindex(*(2,) * order):
            suffix = "".join("xy"[c] for c in comp)
            out[f"{k}_{suffix}" if order else k] = v[(..., *comp)].astype(np.float32)
    return out


def write_shear_flow(path, rng, b=2, t=5, shape=(6, 4)) -> Miniature:
    """t0 tracer, pressure; t1 velocity; scalars Rayleigh, Schmidt; periodic."""
    params = {"Rayleigh": 1e4, "Schmidt": 0.5}
    t0 = {n: rng.normal(size=(b, t, *shape)) for n in ("tracer", "pressure")}
    t1 = {"velocity": rng.normal(size=(b, t, *shape, 2))}
    time = np.arange(t) * 0.25
    with h5py.File(path, "w") as f:
        _root(f, "shear_flow", b, params)
        _dimensions(f, shape, time)
        _boundary(f, "x_periodic", "PERIODIC", "x", shape[0])
        _boundary(f, "y_periodic", "PERIODIC", "y", shape[1])
        _scalars(f, params, {})
        _fields(f, 0, t0)
        _fields(f, 1, t1)
        _empty_groups(f)
    return Miniature(
        Path(path),
        {**_channels(t0, 0), **_channels(t1, 1)},
        params=params,
        time=np.broadcast_to(time, (b, t)),
        bc=("periodic", "periodic"),
        bc_faces=(("periodic", "periodic"), ("periodic", "periodic")),
    )


def write_turbulent_radiative_layer_2d(path, rng, b=2, t=5, shape=(4, 6)) -> Miniature:
    """Per-trajectory time (own start, step 0.1); a time-varying scalar; x periodic, y open."""
    params = {"tcool": 0.1}
    t0 = {n: rng.normal(size=(b, t, *shape)) for n in ("density", "pressure")}
    t1 = {"velocity": rng.normal(size=(b, t, *shape, 2))}
    time = np.arange(b)[:, None] * 3.0 + np.arange(t) * 0.1
    cooling = rng.normal(size=(b, t))
    with h5py.File(path, "w") as f:
        _root(f, "turbulent_radiative_layer_2D", b, params)
        _dimensions(f, shape, time)
        _boundary(f, "x_periodic", "PERIODIC", "x", shape[0])
        _boundary(f, "y_open", "OPEN", "y", shape[1])
        _scalars(f, params, {"cooling_rate": (cooling, True)})
        _fields(f, 0, t0)
        _fields(f, 1, t1)
        _empty_groups(f)
    return Miniature(
        Path(path),
        {**_channels(t0, 0), **_channels(t1, 1)},
        params=params,
        scalars={"cooling_rate": cooling.astype(np.float32)},
        time=time,
        bc=("periodic", "open"),
        bc_faces=(("periodic", "periodic"), ("open", "open")),
    )


def write_active_matter(path, rng, b=2, t=4, shape=(4, 4)) -> Miniature:
    """t0 concentration; t1 velocity; t2 D, E (orientation and strain-rate tensors); periodic."""
    params = {"L": 10.0, "zeta": 1.0, "alpha": -1.0}
    t0 = {"concentration": rng.normal(size=(b, t, *shape))}
    t1 = {"velocity": rng.normal(size=(b, t, *shape, 2))}
    t2 = {n: rng.normal(size=(b, t, *shape, 2, 2)) for n in ("D", "E")}
    time = np.arange(t) * 0.25
    with h5py.File(path, "w") as f:
        _root(f, "active_matter", b, params)
        _dimensions(f, shape, time)
        _boundary(f, "x_periodic", "PERIODIC", "x", shape[0])
        _boundary(f, "y_periodic", "PERIODIC", "y", shape[1])
        _scalars(f, params, {})
        _fields(f, 0, t0)
        _fields(f, 1, t1)
        _fields(f, 2, t2)
    return Miniature(
        Path(path),
        {**_channels(t0, 0), **_channels(t1, 1), **_channels(t2, 2)},
        params=params,
        time=np.broadcast_to(time, (b, t)),
        bc=("periodic", "periodic"),
        bc_faces=(("periodic", "periodic"), ("periodic", "periodic")),
    )


def write_acoustic_scattering_maze(path, rng, b=2, t=5, shape=(5, 5)) -> Miniature:
    """t0 pressure, t1 velocity; constant density and speed_of_sound; x open, y wall."""
    t0 = {"pressure": rng.normal(size=(b, t, *shape))}
    t1 = {"velocity": rng.normal(size=(b, t, *shape, 2))}
    const = {n: rng.uniform(0.5, 2.0, size=(b, *shape)) for n in ("density", "speed_of_sound")}
    time = np.arange(t) * 0.05
    amplitude = rng.normal(size=t)
    with h5py.File(path, "w") as f:
        _root(f, "acoustic_scattering_maze", b, {})
        _dimensions(f, shape, time)
        _boundary(f, "x_open", "OPEN", "x", shape[0])
        _boundary(f, "y_wall", "WALL", "y", shape[1])
        _scalars(f, {}, {"source_amplitude": (amplitude, False)})
        _fields(f, 0, {"density": const["density"]}, time_varying=False)
        _fields(f, 0, t0)
        _fields(f, 0, {"speed_of_sound": const["speed_of_sound"]}, time_varying=False)
        _fields(f, 1, t1)
        _empty_groups(f)
    return Miniature(
        Path(path),
        {**_channels(t0, 0), **_channels(t1, 1)},
        constant={k: v.astype(np.float32) for k, v in const.items()},
        scalars={"source_amplitude": np.broadcast_to(amplitude.astype(np.float32), (b, t))},
        time=np.broadcast_to(time, (b, t)),
        bc=("open", "wall"),
        bc_faces=(("open", "open"), ("wall", "wall")),
    )


def write_rayleigh_benard(path, rng, b=2, t=5, shape=(8, 4)) -> Miniature:
    """t0 buoyancy, pressure; t1 velocity; x periodic; y: wall at the bottom, open at the top."""
    params = {"Rayleigh": 1e6, "Prandtl": 1.0}
    t0 = {n: rng.normal(size=(b, t, *shape)) for n in ("buoyancy", "pressure")}
    t1 = {"velocity": rng.normal(size=(b, t, *shape, 2))}
    time = np.arange(t) * 0.25
    with h5py.File(path, "w") as f:
        _root(f, "rayleigh_benard", b, params)
        _dimensions(f, shape, time)
        _boundary(f, "x_periodic", "PERIODIC", "x", shape[0])
        _boundary(f, "y_wall", "WALL", "y", shape[1], faces=(0,))
        _boundary(f, "y_open", "OPEN", "y", shape[1], faces=(-1,))
        _scalars(f, params, {})
        _fields(f, 0, t0)
        _fields(f, 1, t1)
        _empty_groups(f)
    return Miniature(
        Path(path),
        {**_channels(t0, 0), **_channels(t1, 1)},
        params=params,
        time=np.broadcast_to(time, (b, t)),
        bc=("periodic", "wall"),
        bc_faces=(("periodic", "periodic"), ("wall", "open")),
    )


MINIATURES = {
    "shear_flow": write_shear_flow,
    "turbulent_radiative_layer_2D": write_turbulent_radiative_layer_2d,
    "active_matter": write_active_matter,
    "acoustic_scattering_maze": write_acoustic_scattering_maze,
    "rayleigh_benard": write_rayleigh_benard,
}
"""Dataset name -> writer ``(path, rng) -> Miniature``."""
