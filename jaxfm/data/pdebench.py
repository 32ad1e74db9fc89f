"""Readers for PDEBench HDF5 files (Takamoto et al., *PDEBench*, NeurIPS 2022 Datasets),
mapped onto :class:`jaxfm.data.trajectories.TrajectorySet`.

Layouts (from PDEBench's data-generation code and loaders, ``pdebench/models/fno/utils.py``):

===================  ===========================================================  ============
kind                 keys and shapes                                              fields
===================  ===========================================================  ============
``rdb``              groups ``0000``.. each: ``data (T, X, Y, 1)``,               h
(2D_rdb_NA_NA.h5)    ``grid/x (X,)``, ``grid/y (Y,)``, ``grid/t (T,)``
``diff_react``       same per-seed groups, ``data (T, X, Y, 2)``                   activator,
(2D_diff-react..h5)                                                               inhibitor
``cfd``              ``density``, ``pressure``, ``Vx``, ``Vy`` each (N, T, X, Y); velocity_x/y,
(2D_CFD_*.hdf5)      ``x-coordinate (X,)``, ``y-coordinate (Y,)``,                 density,
                     ``t-coordinate (T,)`` or ``(T + 1,)``                         pressure
``ns_incom``         ``velocity (N, T, X, Y, 2)``, ``particles (N, T, X, Y, 1)``,  velocity_x/y,
(ns_incom_*.h5)      ``force (N, X, Y, 2)``, ``t (N, T)``                          tracer
``tensor_1d``        ``tensor (N, T, X)``, ``x-coordinate (X,)``,                  u (advection)
(1D_Advection_*,     ``t-coordinate (T + 1,)``                                    velocity_x
 1D_Burgers_*)                                                                    (Burgers)
===================  ===========================================================  ============

Boundary conditions: rdb open (transmissive), diff-react wall (no flux), CFD periodic,
ns_incom wall (no slip), 1-D periodic. The CFD system name follows the Mach number in the file
name (``..._M0.1_...`` -> ``compressible_m0.1``, ``M1.0`` -> ``compressible_m1``) so it shares
the system id of our own simulator. ``ns_incom`` files carry no grid: cell centres on [0, 1]².
The per-trajectory forcing of ``ns_incom`` is not a frame field; its rms is kept as the
parameter ``force_rms``.

A missing key raises :class:`PDEBenchFormatError` naming the file and key; NaN/Inf raises with
the trajectory index.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np

from jaxfm.data.sim.stepping import cell_centres
from jaxfm.data.trajectories import TrajectorySet

KINDS = ("rdb", "diff_react", "cfd", "ns_incom", "tensor_1d")
"""Layouts understood by :func:`read_pdebench`."""


class PDEBenchFormatError(ValueError):
    """A file that does not match the expected PDEBench layout (names file and key)."""


def detect_kind(path: str | os.PathLike) -> str:
    """Guess the layout from the file name (see the module table)."""
    name = Path(path).name
    rules = [
        ("2D_rdb", "rdb"),
        ("diff-react", "diff_react"),
        ("CFD", "cfd"),
        ("ns_incom", "ns_incom"),
        ("1D_Advection", "tensor_1d"),
        ("1D_Burgers", "tensor_1d"),
    ]
    for pattern, kind in rules:
        if pattern in name:
            return kind
    raise PDEBenchFormatError(
        f"{path}: cannot tell the PDEBench layout from the name; pass kind= one of {KINDS}"
    )


def _need(path, f, key):
    if key not in f:
        raise PDEBenchFormatError(f"{path}: missing key {key!r} (PDEBench layout)")
    return f[key]


def _dt(t, path, key) -> float:
    t = np.asarray(t, np.float64).reshape(-1)
    if len(t) < 2:
        raise PDEBenchFormatError(f"{path}: {key!r} needs at least two times, got {len(t)}")
    return float(t[1] - t[0])


def _read_seed_groups(path, f, max_traj, n_ch):
    seeds = sorted(k for k in f.keys() if isinstance(f[k], h5py.Group))
    if not seeds:
        raise PDEBenchFormatError(f"{path}: no per-seed groups ('0000', ...) found")
    seeds = seeds[:max_traj] if max_traj else seeds
    data = []
    for s in seeds:
        d = _need(path, f, f"{s}/data")
        if d.ndim != 4 or d.shape[-1] != n_ch:
            raise PDEBenchFormatError(
                f"{path}: {s}/data has shape {d.shape}, expected (T, X, Y, {n_ch})"
            )
        if data and d.shape != data[0].shape:
            raise PDEBenchFormatError(
                f"{path}: {s}/data has shape {d.shape}, but {seeds[0]}/data has {data[0].shape}"
            )
        data.append(np.asarray(d, np.float32))
    g = seeds[0]
    x = np.asarray(_need(path, f, f"{g}/grid/x"))
    y = np.asarray(_need(path, f, f"{g}/grid/y"))
    dt = _dt(_need(path, f, f"{g}/grid/t"), path, f"{g}/grid/t")
    return np.stack(data), (x, y), dt, seeds


def read_pdebench(
    path: str | os.PathLike,
    kind: str | None = None,
    max_traj: int | None = None,
    check_finite: bool = True,
) -> TrajectorySet:
    """Read a PDEBench file into a :class:`TrajectorySet`.

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        kind: layout (one of :data:`KINDS`); default: from the file name.
        max_traj: read only the first ``max_traj`` trajectories.
        check_finite: raise on NaN/Inf, naming the trajectory.
    """
    path = Path(path)
    kind = kind or detect_kind(path)
    if kind not in KINDS:
        raise ValueError(f"unknown PDEBench kind {kind!r}; choose one of {KINDS}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    n = max_traj
    with h5py.File(path, "r") as f:
        if kind in ("rdb", "diff_react"):
            n_ch = 1 if kind == "rdb" else 2
            data, coords, dt, seeds = _read_seed_groups(path, f, n, n_ch)
            ts = TrajectorySet(
                system="shallow_water" if kind == "rdb" else "diffusion_reaction",
                data=data,
                field_names=("h",) if kind == "rdb" else ("activator", "inhibitor"),
                dt=dt,
                coords=coords,
                bc=("open", "open") if kind == "rdb" else ("wall", "wall"),
                params={
                    "seed": np.array([int(s) if s.isdigit() else i for i, s in enumerate(seeds)])
                },
                constants={"source": str(path), "pdebench_kind": kind},
            )
        elif kind == "cfd":
            names = {
                "Vx": "velocity_x",
                "Vy": "velocity_y",
                "density": "density",
                "pressure": "pressure",
            }
            arrays = [np.asarray(_need(path, f, k)[:n], np.float32) for k in names]
            shape = arrays[0].shape
            for k, a in zip(names, arrays):
                if a.ndim != 4 or a.shape != shape:
                    raise PDEBenchFormatError(
                        f"{path}: {k!r} has shape {a.shape}, expected (N, T, X, Y) = {shape}"
                    )
            coords = (
                np.asarray(_need(path, f, "x-coordinate")),
                np.asarray(_need(path, f, "y-coordinate")),
            )
            dt = _dt(_need(path, f, "t-coordinate"), path, "t-coordinate")
            mach = re.search(r"_M([0-9.]+?)_", path.name)
            params = {}
            for key in ("Eta", "Zeta", "M"):
                m = re.search(rf"_{key}([0-9.e-]+?)_", path.name)
                if m:
                    params[key.lower() if key != "M" else "mach"] = np.full(
                        shape[0], float(m.group(1))
                    )
            ts = TrajectorySet(
                system=f"compressible_m{float(mach.group(1)):g}" if mach else "compressible",
                data=np.stack(arrays, -1),
                field_names=tuple(names.values()),
                dt=dt,
                coords=coords,
                bc=("periodic", "periodic"),
                params=params,
                constants={"source": str(path), "pdebench_kind": kind},
            )
        elif kind == "ns_incom":
            vel = np.asarray(_need(path, f, "velocity")[:n], np.float32)
            part = np.asarray(_need(path, f, "particles")[:n], np.float32)
            if vel.ndim != 5 or vel.shape[-1] != 2:
                raise PDEBenchFormatError(
                    f"{path}: 'velocity' has shape {vel.shape}, expected (N, T, X, Y, 2)"
                )
            if part.shape[:-1] != vel.shape[:-1]:
                raise PDEBenchFormatError(
                    f"{path}: 'particles' has shape {part.shape}, expected {vel.shape[:-1]} + (1,)"
                )
            force = np.asarray(_need(path, f, "force")[:n], np.float64)
            t = np.asarray(_need(path, f, "t"))
            dt = _dt(t[0] if t.ndim == 2 else t, path, "t")
            nx, ny = vel.shape[2:4]
            ts = TrajectorySet(
                system="navier_stokes",
                data=np.concatenate([vel, part[..., :1]], -1),
                field_names=("velocity_x", "velocity_y", "tracer"),
                dt=dt,
                coords=(cell_centres(nx, 0, 1), cell_centres(ny, 0, 1)),
                bc=("wall", "wall"),
                params={"force_rms": np.sqrt((force**2).reshape(len(force), -1).mean(1))},
                constants={"source": str(path), "pdebench_kind": kind},
            )
        else:
            u = np.asarray(_need(path, f, "tensor")[:n], np.float32)
            if u.ndim != 3:
                raise PDEBenchFormatError(
                    f"{path}: 'tensor' has shape {u.shape}, expected (N, T, X)"
                )
            x = np.asarray(_need(path, f, "x-coordinate"))
            dt = _dt(_need(path, f, "t-coordinate"), path, "t-coordinate")
            burgers = "Burgers" in path.name
            ts = TrajectorySet(
                system="burgers" if burgers else "advection",
                data=u[..., None],
                field_names=("velocity_x",) if burgers else ("u",),
                dt=dt,
                coords=(x,),
                bc=("periodic",),
                constants={"source": str(path), "pdebench_kind": kind},
            )
    if check_finite:
        ts.check_finite(str(path))
    return ts
