"""Lazy reader for PDEBench HDF5 files (Takamoto et al., *PDEBench*, NeurIPS 2022 Datasets).

:class:`PDEBenchFile` has the protocol of :class:`jaxfm.data.well.WellFile` (metadata on
construction, frames read on demand, h5py opened per process), so a
:class:`jaxfm.data.windows.WindowSource` windows a PDEBench file directly, reading only the frames
of each window; :meth:`PDEBenchFile.load` / :func:`read_pdebench` give a
:class:`TrajectorySet`.

Layouts, as PDEBench's generators write them (``pdebench/data_gen/...``; the FNO loader
``pdebench/models/fno/utils.py`` reads the same keys). Output axes follow jaxfm: data
``(n_traj, n_steps, *spatial, C)`` with spatial axis 0 = x, 1 = y, 2 = z, and ``coords`` in the
same order.

==============  ==========================================  ===============  ==================
kind            keys (file order)                           read as          fields
==============  ==========================================  ===============  ==================
``rdb``         groups ``0000``..: ``data (T, X, Y, 1)``,   as stored        h
                ``grid/{x,y,t}``, attr ``config`` (YAML)
``diff_react``  groups: ``data (T, Y, X, 2)`` (y first!),   y, x swapped     activator,
                ``grid/{x,y,t}``, attr ``config``                            inhibitor
``cfd``         ``density``, ``pressure``, ``Vx`` [, ``Vy``  as stored        velocity_x[/y/z],
                [, ``Vz``]] ``(N, T, X[, Y[, Z]])``,                         density, pressure
                ``{x,y,z,t}-coordinate``, attrs ``eta``,
                ``zeta``, ``M``
``ns_incom``    ``velocity (N, T, X, Y, 2)``, ``particles    as stored        velocity_x/y,
                (N, T, X, Y, 1)``, ``force (N, X, Y, 2)``,                   tracer
                ``t (N, T)``, attr ``config``
``tensor_1d``   ``tensor (N, T, X)``, ``x-coordinate``,      as stored        u (advection),
                ``t-coordinate``, attr ``beta`` / ``Nu``                     velocity_x (Burgers)
==============  ==========================================  ===============  ==================

Why ``diff_react`` is transposed: ``sim_diff_react.Simulator`` flattens the state x-fastest (its
Laplacian couples offsets ±1 through ``dx``, ±Nx through ``dy``) and reshapes to
``(-1, Ny, Nx)``. The radial dam break stores pyclaw's ``q[depth]`` (``(mx, my)``), the CFD solver
its ``(nx, ny, nz)`` state and phiflow ``(batch, x, y, vector)``: all x first.

Time: the NLE generators (advection, Burgers, CFD) write ``T + 1`` times for ``T`` frames; ``dt``
is the spacing of the time coordinate, ``n_steps`` the number of stored frames.

System names: ``shallow_water``, ``diffusion_reaction``, ``navier_stokes``, ``advection``,
``burgers`` (those of our simulators); CFD ``compressible_m<M>`` in 2-D (``M0.1`` ->
``compressible_m0.1``, ``M1.0`` -> ``compressible_m1``, as our simulator), ``compressible_1d``
(1-D files have no Mach number), ``compressible_3d_m<M>``.

Parameters (``params``, one value per trajectory), read from the attributes the generators write
and, failing that, from the file name:

* rdb: ``radius`` (``sim.dam_radius`` of each seed's ``config``), ``seed``.
* diff_react: ``du``, ``dv``, ``k`` (``sim.Du``, ``sim.Dv``, ``sim.k``), ``seed``.
* cfd: ``eta``, ``zeta`` (attrs ``eta``, ``zeta`` / name ``Eta..``, ``Zeta..``), ``mach`` (attr
  ``M`` / name ``M..``).
* ns_incom: ``nu`` (config ``NU``), ``force_rms`` (rms of each trajectory's forcing, which is not
  a frame field).
* advection: ``speed`` (attr / name ``beta``). Burgers: ``nu`` = ``Nu / π``: PDEBench's solver
  diffuses with ``(Nu / π) u_xx``, our ``burgers`` with ``nu u_xx``.

Boundary conditions: rdb open, diff_react wall (no flux), ns_incom wall, 1-D periodic; CFD
periodic, or open for ``..._trans_...`` files (transmissive).

Not read (a clear error): 1-D reaction-diffusion (``ReacDiff_*``), diffusion-sorption
(``1D_diff-sorp``), Darcy flow (``2D_DarcyFlow_*``), which have no jaxfm system.

The layout comes from the keys present, the file name (``2D_rdb``, ``diff-react``, ``CFD``,
``ns_incom``, ``1D_Advection``, ``1D_Burgers``) deciding when the keys fit several. Bad input
raises :class:`PDEBenchFormatError` naming the file and the key (or, for an unknown layout, the
keys found).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import h5py
import numpy as np
import yaml

from jaxfm.data.sim.stepping import cell_centres
from jaxfm.data.trajectories import TrajectorySet

KINDS = ("rdb", "diff_react", "cfd", "ns_incom", "tensor_1d")
"""Layouts understood by :class:`PDEBenchFile`."""

AXES = ("x", "y", "z")

_NAME_HINTS = (
    ("2D_rdb", "rdb"),
    ("diff-react", "diff_react"),
    ("CFD", "cfd"),
    ("ns_incom", "ns_incom"),
    ("1D_Advection", "tensor_1d"),
    ("1D_Burgers", "tensor_1d"),
)

_CFD_FIELDS = (
    ("Vx", "velocity_x"),
    ("Vy", "velocity_y"),
    ("Vz", "velocity_z"),
    ("density", "density"),
    ("pressure", "pressure"),
)


class PDEBenchFormatError(ValueError):
    """A file that does not match a PDEBench layout (the message names the file and key)."""


def kind_from_name(path: str | os.PathLike) -> str | None:
    """The layout the file name suggests (see the module docstring), or ``None``."""
    name = Path(path).name
    return next((kind for pattern, kind in _NAME_HINTS if pattern in name), None)


def _seed_groups(f) -> list[str]:
    """Per-seed groups (``0000``, ``0001``, ...) holding a ``data`` dataset, sorted."""
    return sorted(k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k])


def _kinds_from_keys(f) -> tuple[str, ...]:
    """Layouts whose distinctive keys are present, the likeliest first.

    Per-seed groups fit both rdb and diff_react; the channel count (1 / 2) only orders them,
    so a file name that says which wins.
    """
    if "tensor" in f:
        return ("tensor_1d",)
    if "density" in f and "Vx" in f:
        return ("cfd",)
    if "velocity" in f and "particles" in f:
        return ("ns_incom",)
    seeds = _seed_groups(f)
    if seeds:
        two_channels = f[seeds[0]]["data"].shape[-1:] == (2,)
        return ("diff_react", "rdb") if two_channels else ("rdb", "diff_react")
    return ()


def _detect(path: Path, f) -> str:
    from_keys = _kinds_from_keys(f)
    hint = kind_from_name(path)
    if hint is not None and (hint in from_keys or not from_keys):
        return hint
    if from_keys:
        return from_keys[0]
    raise PDEBenchFormatError(
        f"{path}: not a known PDEBench layout ({', '.join(KINDS)}); keys {sorted(f.keys())}"
    )


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise PDEBenchFormatError(f"{path}: not an HDF5 file ({e})") from None


def detect_kind(path: str | os.PathLike) -> str:
    """The layout of a PDEBench file, from its keys, with the file name as the tie-breaker."""
    path = Path(path)
    with _open(path) as f:
        return _detect(path, f)


def _as_float(value) -> float | None:
    """``value`` as a float (numbers written as strings, e.g. ``1E-3``, included), else None."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _number_in_name(path: Path, key: str) -> float | None:
    """The number after ``_<key>`` in the file name (``..._Eta1e-08_...`` -> 1e-08)."""
    m = re.search(rf"(?:^|_){key}([0-9][0-9.eE+-]*?)(?=_|$)", path.stem)
    return _as_float(m.group(1)) if m else None


class PDEBenchFile:
    """Lazy random access to one PDEBench file; h5py is opened on first read in each process.

    Same protocol as :class:`jaxfm.data.well.WellFile`: a :class:`WindowSource` over it reads
    only the frames of each window, and it pickles without the open handle (Grain workers each
    open their own).

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        kind: layout (one of :data:`KINDS`); default: from the keys and the name.

    Attributes (read on construction, which validates the layout; no frame is read):
        path, kind, system, field_names, n_traj, n_steps, spatial_shape, n_spatial_dims, dt,
        coords, bc, params, constants, axis_names.
    """

    def __init__(self, path: str | os.PathLike, kind: str | None = None):
        self.path = Path(path)
        self._h5 = None
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown PDEBench kind {kind!r}; choose one of {KINDS}")
        with _open(self.path) as f:
            self.kind = kind or _detect(self.path, f)
            self._seeds: list[str] = []
            self._swap_xy = False
            getattr(self, f"_meta_{self.kind}")(f)
        self.n_spatial_dims = len(self.spatial_shape)
        self.axis_names = AXES[: self.n_spatial_dims]
        self.constants = {"source": str(self.path), "pdebench_kind": self.kind}

    def __repr__(self) -> str:
        return f"PDEBenchFile({str(self.path)!r}, kind={self.kind!r})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        return state

    # ----------------------------------------------------------------------------- metadata

    def _need(self, f, key):
        if key not in f:
            raise PDEBenchFormatError(f"{self.path}: missing key {key!r} (PDEBench {self.kind})")
        return f[key]

    def _shape_error(self, key, shape, expected):
        return PDEBenchFormatError(f"{self.path}: {key} has shape {shape}, expected {expected}")

    def _dt(self, t, key) -> float:
        """Frame spacing from a time coordinate of ``n_steps`` or ``n_steps + 1`` entries."""
        t = np.asarray(t, np.float64).reshape(-1)
        if len(t) not in (self.n_steps, self.n_steps + 1) or len(t) < 2:
            raise PDEBenchFormatError(
                f"{self.path}: {key!r} has {len(t)} times for {self.n_steps} frames "
                f"(expected {self.n_steps} or {self.n_steps + 1}, at least 2)"
            )
        return float(t[1] - t[0])

    def _coord(self, f, key, n):
        c = np.asarray(self._need(f, key), np.float32).reshape(-1)
        if len(c) != n:
            raise self._shape_error(repr(key), c.shape, f"({n},) (the grid of the data)")
        return c

    def _config(self, obj, where) -> dict:
        """The Hydra ``config`` attribute (YAML) of ``obj``, ``{}`` when absent."""
        if "config" not in obj.attrs:
            return {}
        text = obj.attrs["config"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise PDEBenchFormatError(
                f"{self.path}: attribute 'config' of {where!r} is not YAML ({first})"
            ) from None
        return config if isinstance(config, dict) else {}

    def _per_traj(self, values) -> np.ndarray | None:
        """``(n_traj,)`` float64 from one value per trajectory, or None if any is missing."""
        values = [_as_float(v) for v in values]
        if not values or any(v is None for v in values):
            return None
        return np.asarray(values, np.float64)

    def _file_param(self, f, attr, name_key) -> np.ndarray | None:
        """A file-wide parameter: attribute ``attr``, else ``_<name_key><number>`` in the name."""
        value = _as_float(f.attrs[attr]) if attr in f.attrs else None
        if value is None:
            value = _number_in_name(self.path, name_key)
        return None if value is None else np.full(self.n_traj, value)

    def _meta_seed_groups(self, f, n_ch, fields) -> list[dict]:
        """Shared metadata of the per-seed layouts; returns each seed's ``sim`` settings.

        Every seed must hold data of one shape (they are stacked as trajectories); the grid
        and times of the first seed serve all, as the generators use one config for all.
        """
        seeds = _seed_groups(f)
        if not seeds:
            raise PDEBenchFormatError(
                f"{self.path}: no per-seed groups ('0000', ...) with 'data'; keys {sorted(f)}"
            )
        first = f[f"{seeds[0]}/data"]
        for s in seeds:
            shape = f[f"{s}/data"].shape
            if len(shape) != 4 or shape[-1] != n_ch:
                order = "T, Y, X" if self._swap_xy else "T, X, Y"
                raise self._shape_error(f"{s}/data", shape, f"({order}, {n_ch})")
            if shape != first.shape:
                raise self._shape_error(f"{s}/data", shape, f"{first.shape} (as {seeds[0]}/data)")
        self._seeds = seeds
        self.n_traj, self.n_steps = len(seeds), first.shape[0]
        file_shape = first.shape[1:3]
        self.spatial_shape = file_shape[::-1] if self._swap_xy else file_shape
        g = seeds[0]
        self.coords = tuple(
            self._coord(f, f"{g}/grid/{a}", n) for a, n in zip("xy", self.spatial_shape)
        )
        self.dt = self._dt(self._need(f, f"{g}/grid/t"), f"{g}/grid/t")
        self.field_names = fields
        self._channels = [("data", c) for c in range(n_ch)]
        sims = [self._config(f[s], s).get("sim") for s in seeds]
        return [sim if isinstance(sim, dict) else {} for sim in sims]

    def _seed_params(self, configs, names) -> dict:
        params = {
            "seed": np.array([int(s) if s.isdigit() else i for i, s in enumerate(self._seeds)])
        }
        for ours, theirs in names.items():
            v = self._per_traj(c.get(theirs) for c in configs)
            if v is not None:
                params[ours] = v
        return params

    def _meta_rdb(self, f):
        configs = self._meta_seed_groups(f, 1, ("h",))
        self.system, self.bc = "shallow_water", ("open", "open")
        self.params = self._seed_params(configs, {"radius": "dam_radius"})

    def _meta_diff_react(self, f):
        self._swap_xy = True
        configs = self._meta_seed_groups(f, 2, ("activator", "inhibitor"))
        self.system, self.bc = "diffusion_reaction", ("wall", "wall")
        self.params = self._seed_params(configs, {"du": "Du", "dv": "Dv", "k": "k"})

    def _meta_cfd(self, f):
        density = self._need(f, "density")
        n_sp = density.ndim - 2
        if n_sp not in (1, 2, 3):
            raise self._shape_error("'density'", density.shape, "(N, T, X[, Y[, Z]])")
        keys = [(k, n) for k, n in _CFD_FIELDS if k not in ("Vy", "Vz")[n_sp - 1 :]]
        for k, _ in keys:
            d = self._need(f, k)
            if d.shape != density.shape:
                raise self._shape_error(repr(k), d.shape, f"{density.shape} (as 'density')")
        self.n_traj, self.n_steps = density.shape[:2]
        self.spatial_shape = tuple(density.shape[2:])
        self.coords = tuple(
            self._coord(f, f"{a}-coordinate", n) for a, n in zip(AXES, self.spatial_shape)
        )
        self.dt = self._dt(self._need(f, "t-coordinate"), "t-coordinate")
        self.field_names = tuple(name for _, name in keys)
        self._channels = [(k, None) for k, _ in keys]
        transmissive = re.search(r"(?:^|_)trans(?:_|$)", self.path.stem) is not None
        self.bc = ("open" if transmissive else "periodic",) * n_sp
        params = {}
        for ours, attr, in_name in (("eta", "eta", "Eta"), ("zeta", "zeta", "Zeta")):
            v = self._file_param(f, attr, in_name)
            if v is not None:
                params[ours] = v
        mach = self._file_param(f, "M", "M") if n_sp > 1 else None
        if mach is not None:
            params["mach"] = mach
        self.params = params
        suffix = f"_m{mach[0]:g}" if mach is not None and len(mach) else ""
        self.system = {1: "compressible_1d", 2: f"compressible{suffix}"}.get(
            n_sp, f"compressible_3d{suffix}"
        )

    def _meta_ns_incom(self, f):
        vel = self._need(f, "velocity")
        if vel.ndim != 5 or vel.shape[-1] != 2:
            raise self._shape_error("'velocity'", vel.shape, "(N, T, X, Y, 2)")
        part = self._need(f, "particles")
        if part.shape != vel.shape[:-1] + (1,):
            raise self._shape_error("'particles'", part.shape, f"{vel.shape[:-1] + (1,)}")
        force = self._need(f, "force")
        if force.shape != vel.shape[:1] + vel.shape[2:]:
            raise self._shape_error("'force'", force.shape, f"{vel.shape[:1] + vel.shape[2:]}")
        self.n_traj, self.n_steps = vel.shape[:2]
        self.spatial_shape = tuple(vel.shape[2:4])
        t = self._need(f, "t")
        self.dt = self._dt(t[0] if t.ndim == 2 else t[...], "t")  # every trajectory alike
        config = self._config(f, "/")
        size = config.get("domain_size") or [1.0, 1.0]
        if not isinstance(size, list | tuple) or len(size) != 2 or None in map(_as_float, size):
            raise PDEBenchFormatError(f"{self.path}: config domain_size {size!r} is not 2 numbers")
        self.coords = tuple(
            cell_centres(n, 0.0, float(s)) for n, s in zip(self.spatial_shape, size)
        )
        self.field_names = ("velocity_x", "velocity_y", "tracer")
        self._channels = [("velocity", 0), ("velocity", 1), ("particles", 0)]
        self.system, self.bc = "navier_stokes", ("wall", "wall")
        # One trajectory's forcing at a time: it is as large as a frame of velocity.
        rms = [
            math.sqrt(float(np.mean(np.square(force[i], dtype=np.float64))))
            for i in range(self.n_traj)
        ]
        self.params = {"force_rms": np.asarray(rms)}
        nu = _as_float(config.get("NU"))
        if nu is not None:
            self.params["nu"] = np.full(self.n_traj, nu)

    def _meta_tensor_1d(self, f):
        u = self._need(f, "tensor")
        if u.ndim != 3:
            raise self._shape_error("'tensor'", u.shape, "(N, T, X)")
        self.n_traj, self.n_steps = u.shape[:2]
        self.spatial_shape = (u.shape[2],)
        self.coords = (self._coord(f, "x-coordinate", u.shape[2]),)
        self.dt = self._dt(self._need(f, "t-coordinate"), "t-coordinate")
        self._channels = [("tensor", None)]
        self.bc = ("periodic",)
        if self._equation_1d(f) == "advection":
            self.system, self.field_names = "advection", ("u",)
            speed = self._file_param(f, "beta", "beta")
            self.params = {} if speed is None else {"speed": speed}
        else:
            self.system, self.field_names = "burgers", ("velocity_x",)
            nu = self._file_param(f, "Nu", "Nu")
            self.params = {} if nu is None else {"nu": nu / math.pi}

    def _equation_1d(self, f) -> str:
        """Advection or Burgers: the name says, else the attribute ``transform`` wrote.

        ``Data_Merge.transform`` writes ``beta`` for advection, ``Nu`` for Burgers and ``Nu`` +
        ``rho`` for 1-D reaction-diffusion (``ReacDiff_*``), which has no jaxfm system.
        """
        name = self.path.name
        if "ReacDiff" in name or "rho" in f.attrs:
            raise PDEBenchFormatError(
                f"{self.path}: 1-D reaction-diffusion ('tensor' with 'Nu' and 'rho') is not "
                f"supported; the 'tensor' layout reads advection and Burgers"
            )
        if "Advection" in name or ("Burgers" not in name and "beta" in f.attrs):
            return "advection"
        if "Burgers" in name or "Nu" in f.attrs:
            return "burgers"
        raise PDEBenchFormatError(
            f"{self.path}: cannot tell advection or Burgers ('tensor' layout): the name has "
            f"neither '1D_Advection' nor '1D_Burgers' and there is no 'beta' or 'Nu' attribute"
        )

    # ----------------------------------------------------------------------------- frames

    def _file(self):
        if self._h5 is None:
            self._h5 = _open(self.path)
        return self._h5

    def _frames(self, start, stop, stride) -> range:
        if stride < 1:
            raise ValueError(f"{self.path}: stride must be >= 1, got {stride}")
        return range(*slice(start, stop, stride).indices(self.n_steps))

    def read(self, traj: int, start: int = 0, stop: int | None = None, stride: int = 1):
        """Frames ``start:stop:stride`` of trajectory ``traj``, float32 ``(T, *spatial, C)``.

        Only those frames are read from the file (one h5py hyperslab per dataset).
        """
        if not 0 <= traj < self.n_traj:
            raise IndexError(f"{self.path}: trajectory {traj} out of range [0, {self.n_traj})")
        frames = self._frames(start, stop, stride)
        if not frames:
            return np.zeros((0, *self.spatial_shape, len(self.field_names)), np.float32)
        sl = slice(frames.start, frames[-1] + 1, frames.step)
        f = self._file()
        cache, out = {}, []
        for key, comp in self._channels:
            if key not in cache:
                if self._seeds:
                    cache[key] = f[f"{self._seeds[traj]}/{key}"][sl]
                else:
                    cache[key] = f[key][traj, sl]
            a = cache[key]
            out.append(a if comp is None else a[..., comp])
        data = np.stack(out, -1).astype(np.float32, copy=False)
        if self._swap_xy:  # (T, Y, X, C) on disk
            data = np.ascontiguousarray(data.swapaxes(1, 2))
        return data

    def check_finite(self) -> None:
        """Raise ``ValueError`` naming the first trajectory (and frame) with NaN or Inf.

        Streams one trajectory at a time, so it works on files larger than memory.
        """
        for i in range(self.n_traj):
            bad = ~np.isfinite(self.read(i))
            if bad.any():
                step = int(np.argmax(bad.reshape(bad.shape[0], -1).any(1)))
                raise ValueError(
                    f"{self.path}: non-finite values (NaN/Inf) in trajectory {i} "
                    f"(first at frame {step})"
                )

    def load(self, check_finite: bool = True, max_traj: int | None = None) -> TrajectorySet:
        """The first ``max_traj`` (default: all) trajectories as a :class:`TrajectorySet`.

        Fills one preallocated array trajectory by trajectory, so the peak memory is the result
        plus one trajectory.
        """
        if max_traj is not None and max_traj < 1:
            raise ValueError(f"{self.path}: max_traj must be >= 1, got {max_traj}")
        n = self.n_traj if max_traj is None else min(max_traj, self.n_traj)
        data = np.empty((n, self.n_steps, *self.spatial_shape, len(self.field_names)), np.float32)
        for i in range(n):
            data[i] = self.read(i)
        ts = TrajectorySet(
            system=self.system,
            data=data,
            field_names=self.field_names,
            dt=self.dt,
            coords=self.coords,
            bc=self.bc,
            params={k: v[:n] for k, v in self.params.items()},
            constants=dict(self.constants),
            axis_names=self.axis_names,
        )
        if check_finite:
            ts.check_finite(str(self.path))
        return ts

    def close(self) -> None:
        """Close the h5py handle of this process (reopened on the next read)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def read_pdebench(
    path: str | os.PathLike,
    kind: str | None = None,
    max_traj: int | None = None,
    check_finite: bool = True,
) -> TrajectorySet:
    """Load a PDEBench file into a :class:`TrajectorySet` (see :class:`PDEBenchFile`).

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        kind: layout (one of :data:`KINDS`); default: from the keys and the file name.
        max_traj: read only the first ``max_traj`` trajectories.
        check_finite: raise on NaN/Inf, naming the trajectory.
    """
    lazy = PDEBenchFile(path, kind)
    try:
        return lazy.load(check_finite=check_finite, max_traj=max_traj)
    finally:
        lazy.close()
