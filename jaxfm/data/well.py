"""The Well's HDF5 layout: writer, lazy reader, loader into :class:`TrajectorySet`.

File layout (Ohana et al., *The Well*, NeurIPS 2024 Datasets; ``docs/data_format.md`` of
PolymathicAI/the_well), float32, shapes ``(n_traj, n_steps, x, y[, d])``. Written by
:func:`write_well` (passes The Well's ``check_thewell_formatting.py`` and
``check_thewell_data.py``)::

    /                     attrs: dataset_name, grid_type="cartesian", n_spatial_dims,
                                 n_trajectories, simulation_parameters (names), one attribute
                                 per parameter (a float, or one value per trajectory),
                                 jaxfm_channel_order, jaxfm_constants (JSON), jaxfm_dt,
                                 jaxfm_generator_settings (JSON)
    dimensions/           attrs: spatial_dims; datasets time (T,) time_varying, x (X,), y (Y,)
    boundary_conditions/  <axis>_<type>/ (x_periodic, y_wall, ...): attrs bc_type
                                 (PERIODIC|WALL|OPEN), associated_dims, associated_fields;
                                 datasets mask (True on the faces it holds), values
    scalars/              one dataset per per-trajectory parameter, shape (n_traj,),
                          attrs sample_varying=True, time_varying=False; attr field_names
    t0_fields/            scalar fields (B, T, X, Y); attr field_names
    t1_fields/            vector fields (B, T, X, Y, D): channels <name>_x, <name>_y grouped
    t2_fields/            tensor fields (B, T, X, Y, D, D): channels <name>_xx, <name>_xy, ...

Every dataset carries ``sample_varying`` / ``time_varying`` (fields also ``dim_varying``)
attributes as in The Well. Directory layout written by :func:`write_dataset`::

    <root>/<system>/data/{train,valid,test}/<system>.hdf5
    <root>/<system>/stats.yaml     mean, std, rms and their _delta variants of the train split,
                                   per Well field (see :mod:`jaxfm.data.normalize`)

:class:`WellFile` also reads what The Well writes beyond that: time-constant fields (kept out
of the predicted channels, see :meth:`WellFile.read_constants`), time-varying scalars
(:meth:`WellFile.read_scalars`), per-trajectory time ``(B, T)`` (:attr:`WellFile.dts`),
fields constant along a spatial axis (``dim_varying``), and a different boundary on each face
of an axis (:attr:`WellFile.bc_faces`). :func:`well_split_files` lists a split's files.

Writes are atomic: a temporary file in the same folder, then ``os.replace``. A missing or
mismatched key raises :class:`WellFormatError` naming the file and the key.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from jaxfm.data.trajectories import BC_TYPES, TrajectorySet


class WellFormatError(ValueError):
    """A file that does not follow The Well's layout (message names the file and the key)."""


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


class WellField(NamedTuple):
    """One field as The Well stores it: a dataset of ``t{order}_fields``."""

    name: str
    """Dataset name, e.g. ``velocity`` for the channels ``velocity_x``, ``velocity_y``."""
    order: int
    """Tensor order: 0 scalar, 1 vector, 2 tensor."""
    channels: np.ndarray
    """Channel indices, shape ``(D,) * order`` (component ``(i, j)`` is ``channels[i, j]``)."""


def well_fields(field_names, axis_names) -> list[WellField]:
    """Group channels into The Well's fields.

    ``base_<a>`` for every axis ``a`` becomes a vector field ``base``, ``base_<a><b>`` for every
    pair of axes a tensor field; any other channel is a scalar field of its own name. Fields
    come in the order of their first channel.
    """
    index = {n: i for i, n in enumerate(field_names)}
    out, used = [], set()
    for name in field_names:
        if name in used:
            continue
        base, _, suffix = name.rpartition("_")
        order = len(suffix) if base and 1 <= len(suffix) <= 2 else 0
        comps = ["".join(c) for c in itertools.product(axis_names, repeat=order)]
        names = [f"{base}_{c}" for c in comps]
        if order and suffix in comps and all(n in index and n not in used for n in names):
            shape = (len(axis_names),) * order
            out.append(WellField(base, order, np.array([index[n] for n in names]).reshape(shape)))
            used.update(names)
        else:
            out.append(WellField(name, 0, np.array(index[name])))
            used.add(name)
    return out


_ROOT_ATTRS = (
    "dataset_name",
    "grid_type",
    "n_spatial_dims",
    "n_trajectories",
    "simulation_parameters",
)


def write_well(ts: TrajectorySet, path: str | os.PathLike, settings: dict | None = None) -> Path:
    """Write ``ts`` to ``path`` in The Well's layout, atomically.

    Args:
        ts: trajectories to write.
        path: target ``.hdf5`` file (its folder is created).
        settings: generator settings stored as JSON in the root attribute
            ``jaxfm_generator_settings``.

    Returns:
        The path written.
    """
    path = Path(path)
    clash = sorted(k for k in ts.params if k in _ROOT_ATTRS or k.startswith("jaxfm_"))
    if clash:
        raise ValueError(f"{path}: parameter names {clash} clash with The Well's root attributes")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            _write_root(f, ts, settings)
            _write_dimensions(f, ts)
            _write_boundaries(f, ts)
            _write_scalars(f, ts)
            _write_fields(f, ts)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _flags(obj, sample_varying: bool, time_varying: bool) -> None:
    obj.attrs["sample_varying"] = sample_varying
    obj.attrs["time_varying"] = time_varying


def _write_root(f, ts: TrajectorySet, settings) -> None:
    f.attrs["dataset_name"] = ts.system
    f.attrs["grid_type"] = "cartesian"
    f.attrs["n_spatial_dims"] = ts.n_spatial_dims
    f.attrs["n_trajectories"] = ts.n_traj
    f.attrs["simulation_parameters"] = list(ts.params)
    # The Well's checker wants each parameter as a root attribute too (a float there); ours
    # vary per trajectory, so the attribute is the float when they agree, else the values.
    for k, v in ts.params.items():
        uniform = v.size and np.all(v == v[0])
        f.attrs[k] = float(v[0]) if uniform else v.astype(np.float32)
    f.attrs["jaxfm_channel_order"] = list(ts.field_names)
    f.attrs["jaxfm_constants"] = json.dumps(ts.constants)
    f.attrs["jaxfm_dt"] = float(ts.dt)
    f.attrs["jaxfm_generator_settings"] = json.dumps(settings or {})


def _write_dimensions(f, ts: TrajectorySet) -> None:
    dims = f.create_group("dimensions")
    dims.attrs["spatial_dims"] = list(ts.axis_names)
    _flags(dims.create_dataset("time", data=ts.time), False, True)
    for name, c in zip(ts.axis_names, ts.coords):
        _flags(dims.create_dataset(name, data=c), False, False)


def _write_boundaries(f, ts: TrajectorySet) -> None:
    """One group per axis, named ``<axis>_<type>`` (the checker's naming), both faces masked."""
    bcs = f.create_group("boundary_conditions")
    for name, c, bc in zip(ts.axis_names, ts.coords, ts.bc):
        g = bcs.create_group(f"{name}_{bc}")
        g.attrs["associated_dims"] = [name]
        g.attrs["associated_fields"] = []
        g.attrs["bc_type"] = bc.upper()
        _flags(g, False, False)
        mask = np.zeros(len(c), bool)
        mask[[0, -1]] = True
        g.create_dataset("mask", data=mask)
        g.create_dataset("values", data=np.zeros(int(mask.sum()), np.float32))


def _write_scalars(f, ts: TrajectorySet) -> None:
    sc = f.create_group("scalars")
    sc.attrs["field_names"] = list(ts.params)
    for k, v in ts.params.items():
        _flags(sc.create_dataset(k, data=v.astype(np.float32)), True, False)


def _write_fields(f, ts: TrajectorySet) -> None:
    groups = [f.create_group(f"t{i}_fields") for i in range(3)]
    fields = well_fields(ts.field_names, ts.axis_names)
    for order, g in enumerate(groups):
        g.attrs["field_names"] = [w.name for w in fields if w.order == order]
    for w in fields:
        # one frame per chunk: windows read frames
        chunk = (1, 1, *ts.spatial_shape, *w.channels.shape)
        data = ts.data[..., w.channels]
        d = groups[w.order].create_dataset(w.name, data=data, chunks=chunk)
        _field_attrs(d, ts.n_spatial_dims)
        if w.order == 2:  # The Well's tensor attributes
            transposed = np.swapaxes(data, -1, -2)
            d.attrs["symmetric"] = bool(np.array_equal(data, transposed))
            d.attrs["antisymmetric"] = bool(np.array_equal(data, -transposed))


def _field_attrs(d, n_sp):
    d.attrs["dim_varying"] = np.ones(n_sp, bool)
    _flags(d, True, True)


def _str_list(value) -> list[str]:
    if isinstance(value, (str, bytes)):
        value = [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


class _Channel(NamedTuple):
    """Where one channel lives: dataset key, component index, name, and what it varies over."""

    key: str
    comp: tuple[int, ...]
    name: str
    per_sample: bool
    per_time: bool
    dim_varying: tuple[bool, ...]


def _axis_bc(lower: str, upper: str) -> str:
    """One boundary condition for an axis whose two faces may differ (see :class:`WellFile`)."""
    if lower == upper:
        return lower
    return "wall" if "wall" in (lower, upper) else "open"


class WellFile:
    """Lazy random access to one Well-layout file; h5py is opened on first read in each process.

    Pickles without the open handle, so Grain worker processes each open their own.

    Predicted channels are the time-varying fields (``field_names``). A field constant in time
    (``time_varying=False``, e.g. the density and sound speed of The Well's acoustic mazes) is
    not one of them by default: a next-step surrogate would spend capacity and loss on copying
    it, and The Well has no delta statistics for it; The Well's ``WellDataset`` returns such
    fields apart too (``constant_fields``). Read them with :meth:`read_constants` (e.g. to feed
    them to a model as conditioning), or pass ``include_constants=True`` to append them to every
    frame as extra channels after the time-varying ones.

    Boundaries are kept per face in ``bc_faces`` (``(lower, upper)`` per axis, from each
    boundary group's mask; a face no group covers is ``open``, as in The Well). ``bc`` has one
    entry per axis: the faces' type when they agree; otherwise ``wall`` if either face is a
    wall, else ``open``. A mixed axis is never ``periodic`` (periodicity joins the two faces).

    Args:
        path: the ``.hdf5`` file.
        include_constants: append the time-constant fields to the channels of :meth:`read`.

    Attributes (read from the file on construction, which validates the layout):
        system, field_names, constant_field_names, scalar_names, n_traj, n_steps,
        spatial_shape, axis_names, coords, times ``(n_traj, n_steps)``, dts ``(n_traj,)``, dt,
        bc, bc_faces, params (time-constant scalars, ``(n_traj,)`` each), constants, settings.
    """

    def __init__(self, path: str | os.PathLike, include_constants: bool = False):
        self.path = Path(path)
        self.include_constants = include_constants
        self._h5 = None
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise WellFormatError(f"{self.path}: not an HDF5 file ({e})") from None
        with f:
            self._read_meta(f)

    def __repr__(self) -> str:
        return f"WellFile({str(self.path)!r})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        return state

    def _need(self, f, key):
        if key not in f:
            raise WellFormatError(f"{self.path}: missing key {key!r} (The Well layout)")
        return f[key]

    def _attr(self, obj, key, where):
        if key not in obj.attrs:
            raise WellFormatError(f"{self.path}: missing attribute {key!r} on {where!r}")
        return obj.attrs[key]

    def _read_meta(self, f):
        self.system = str(self._attr(f, "dataset_name", "/"))
        grid = str(f.attrs.get("grid_type", "cartesian"))
        if grid != "cartesian":
            raise WellFormatError(
                f"{self.path}: grid_type {grid!r} is not supported (only 'cartesian' grids)"
            )
        self.n_traj = int(self._attr(f, "n_trajectories", "/"))
        self._read_dimensions(f)
        self._read_boundaries(f)
        self._read_fields(f)
        self._read_scalars(f)
        self.constants = json.loads(f.attrs.get("jaxfm_constants", "{}"))
        self.settings = json.loads(f.attrs.get("jaxfm_generator_settings", "{}"))

    def _read_dimensions(self, f):
        n_sp = int(self._attr(f, "n_spatial_dims", "/"))
        dims = self._need(f, "dimensions")
        axes = _str_list(self._attr(dims, "spatial_dims", "dimensions"))
        if len(axes) != n_sp:
            raise WellFormatError(
                f"{self.path}: dimensions.spatial_dims {axes} does not match n_spatial_dims {n_sp}"
            )
        self.axis_names = tuple(axes)
        self.coords = tuple(np.asarray(self._need(f, f"dimensions/{a}")) for a in axes)
        self.spatial_shape = tuple(len(c) for c in self.coords)
        time = np.asarray(self._need(f, "dimensions/time"), np.float64)
        if time.ndim == 1:
            time = np.broadcast_to(time, (self.n_traj, len(time)))
        elif time.shape[0] != self.n_traj or time.ndim != 2:
            raise WellFormatError(
                f"{self.path}: dimensions/time has shape {time.shape}, expected (time,) or "
                f"({self.n_traj}, time)"
            )
        self.times = time
        self.n_steps = time.shape[1]
        if "jaxfm_dt" in f.attrs:
            self.dts = np.full(self.n_traj, float(f.attrs["jaxfm_dt"]))
        else:
            self.dts = np.array([self._uniform_step(i, t) for i, t in enumerate(time)])

    def _uniform_step(self, traj: int, t: np.ndarray) -> float:
        """The time step of one trajectory; frames must be evenly spaced (jaxfm has one dt)."""
        if len(t) < 2:
            return 1.0
        steps = np.diff(t)
        tol = 1e-4 * abs(steps[0]) + 8 * np.finfo(np.float32).eps * np.abs(t).max()
        bad = np.flatnonzero(np.abs(steps - steps[0]) > tol)
        if bad.size:
            i = int(bad[0])
            raise WellFormatError(
                f"{self.path}: non-uniform time steps in trajectory {traj}: frame {i} to "
                f"{i + 1} is {steps[i]:g}, the first step {steps[0]:g} (one dt per trajectory "
                "is required)"
            )
        return float(steps.mean())

    @property
    def dt(self) -> float:
        """The time step shared by every trajectory (see :attr:`dts` when they differ)."""
        if not np.allclose(self.dts, self.dts[0], rtol=1e-5, atol=0):
            raise WellFormatError(
                f"{self.path}: trajectories have different time steps {self.dts.tolist()}; "
                "read them one by one with WellFile.read and WellFile.dts"
            )
        return float(self.dts[0])

    def _read_boundaries(self, f):
        bcs = self._need(f, "boundary_conditions")
        faces = [["open", "open"] for _ in self.axis_names]
        for name in bcs:
            g = bcs[name]
            where = f"boundary_conditions/{name}"
            kind = str(self._attr(g, "bc_type", where)).lower()
            if kind not in BC_TYPES:
                raise WellFormatError(f"{self.path}: {where} bc_type {kind!r} not in {BC_TYPES}")
            dims = _str_list(self._attr(g, "associated_dims", where))
            mask = np.asarray(g["mask"], bool) if "mask" in g else None
            for j, a in enumerate(dims):
                if a not in self.axis_names:
                    raise WellFormatError(
                        f"{self.path}: {where} associated dim {a!r} not in {self.axis_names}"
                    )
                i = self.axis_names.index(a)
                for face in (0, 1):
                    if mask is None or self._covers(mask, len(dims), j, face, kind):
                        faces[i][face] = kind
        self.bc_faces = tuple((lo, hi) for lo, hi in faces)
        self.bc = tuple(_axis_bc(lo, hi) for lo, hi in faces)

    @staticmethod
    def _covers(mask, n_dims, j, face, kind) -> bool:
        """Does a boundary mask hold the lower (0) or upper (1) face of its ``j``-th dim?

        As The Well's reader: a wall must cover the whole face, open or periodic any of it.
        """
        side = np.take(mask, 0 if face == 0 else -1, axis=mask.ndim - n_dims + j)
        return bool(side.all() if kind == "wall" else side.any())

    def _read_fields(self, f):
        n_sp = len(self.axis_names)
        variable, constant = [], []
        for order, group in enumerate(("t0_fields", "t1_fields", "t2_fields")):
            g = self._need(f, group)
            for name in _str_list(self._attr(g, "field_names", group)):
                key = f"{group}/{name}"
                d = self._need(f, key)
                # The Well allows fields constant over trajectories, time or axes (attrs say).
                per_sample = bool(d.attrs.get("sample_varying", True))
                per_time = bool(d.attrs.get("time_varying", True))
                dim_varying = tuple(bool(v) for v in d.attrs.get("dim_varying", [True] * n_sp))
                expect = (
                    (self.n_traj,) * per_sample
                    + (self.n_steps,) * per_time
                    + tuple(n for n, v in zip(self.spatial_shape, dim_varying) if v)
                    + (n_sp,) * order
                )
                if d.shape != expect or len(dim_varying) != n_sp:
                    lead = "n_trajectories, " * per_sample + "time, " * per_time
                    raise WellFormatError(
                        f"{self.path}: {key} has shape {d.shape}, expected {expect} "
                        f"({lead}{', '.join(self.axis_names)}{', d' * order})"
                    )
                for comp in np.ndindex(*(n_sp,) * order):
                    suffix = "".join(self.axis_names[c] for c in comp)
                    label = f"{name}_{suffix}" if order else name
                    ch = _Channel(key, comp, label, per_sample, per_time, dim_varying)
                    (variable if per_time else constant).append(ch)
        if "jaxfm_channel_order" in f.attrs:
            variable = self._jaxfm_order(f, variable)
        self._variable, self._constant = variable, constant
        self._channels = variable + constant * self.include_constants
        self.field_names = tuple(c.name for c in self._channels)
        self.constant_field_names = tuple(c.name for c in constant)

    def _jaxfm_order(self, f, channels):
        order = _str_list(f.attrs["jaxfm_channel_order"])
        by_name = {c.name: c for c in channels}
        if sorted(order) != sorted(by_name):
            raise WellFormatError(
                f"{self.path}: jaxfm_channel_order {order} does not match fields {sorted(by_name)}"
            )
        return [by_name[n] for n in order]

    def _read_scalars(self, f):
        params, varying = {}, []
        if "scalars" in f:
            sc = f["scalars"]
            names = _str_list(sc.attrs["field_names"]) if "field_names" in sc.attrs else list(sc)
            for name in names:
                d = self._need(f, f"scalars/{name}")
                per_sample = bool(d.attrs.get("sample_varying", d.shape[:1] == (self.n_traj,)))
                per_time = bool(d.attrs.get("time_varying", False))
                expect = (self.n_traj,) * per_sample + (self.n_steps,) * per_time
                if per_time and d.shape != expect:
                    raise WellFormatError(
                        f"{self.path}: scalars/{name} has shape {d.shape}, expected {expect}"
                    )
                if per_time:
                    varying.append((name, per_sample))
                    continue
                v = np.asarray(d, np.float64).reshape(-1)
                if v.shape == (self.n_traj,) and per_sample:
                    params[name] = v
                elif v.size == 1:
                    params[name] = np.full(self.n_traj, v[0])
                else:
                    raise WellFormatError(
                        f"{self.path}: scalars/{name} has shape {d.shape}, expected {expect}"
                    )
        for name in _str_list(f.attrs.get("simulation_parameters", [])):
            if name not in params and name in f.attrs:
                v = np.asarray(f.attrs[name], np.float64).reshape(-1)
                if v.size not in (1, self.n_traj):
                    raise WellFormatError(
                        f"{self.path}: root attribute {name!r} has {v.size} values, expected 1 "
                        f"or n_trajectories={self.n_traj}"
                    )
                params[name] = v if v.size == self.n_traj else np.full(self.n_traj, v[0])
        self.params = params
        self._scalars = varying
        self.scalar_names = tuple(n for n, _ in varying)

    def _file(self):
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def _check_traj(self, traj: int) -> None:
        if not 0 <= traj < self.n_traj:
            raise IndexError(f"{self.path}: trajectory {traj} out of range [0, {self.n_traj})")

    def _read_dataset(self, ch: _Channel, traj: int, frames: slice) -> np.ndarray:
        """``(frames?, *spatial, *components)`` of one dataset, axes it is constant on expanded."""
        d = self._file()[ch.key]
        index = (traj,) * ch.per_sample + (frames,) * ch.per_time
        a = np.asarray(d[index] if index else d[...], np.float32)
        lead = int(ch.per_time)
        for axis, varies in enumerate(ch.dim_varying):
            if not varies:
                a = np.expand_dims(a, lead + axis)
        shape = (*a.shape[:lead], *self.spatial_shape, *a.shape[lead + len(ch.dim_varying) :])
        return np.broadcast_to(a, shape)

    def read(self, traj: int, start: int = 0, stop: int | None = None, stride: int = 1):
        """Frames ``start:stop:stride`` of trajectory ``traj``, float32 ``(T, *spatial, C)``."""
        self._check_traj(traj)
        sl = slice(start, stop, stride)
        n_frames = len(range(*sl.indices(self.n_steps)))
        cache, out = {}, []
        for ch in self._channels:
            if ch.key not in cache:
                a = self._read_dataset(ch, traj, sl)
                if not ch.per_time:  # constant in time: repeat for every frame
                    a = np.broadcast_to(a, (n_frames, *a.shape))
                cache[ch.key] = a
            a = cache[ch.key]
            out.append(a[(..., *ch.comp)] if ch.comp else a)
        if not out:
            return np.zeros((n_frames, *self.spatial_shape, 0), np.float32)
        return np.stack(out, -1)

    def read_constants(self, traj: int) -> np.ndarray:
        """The time-constant fields of trajectory ``traj``, float32 ``(*spatial, C_const)``, in
        the order of ``constant_field_names`` (empty last axis when there are none)."""
        self._check_traj(traj)
        cache, out = {}, []
        for ch in self._constant:
            if ch.key not in cache:
                cache[ch.key] = self._read_dataset(ch, traj, slice(None))
            a = cache[ch.key]
            out.append(a[(..., *ch.comp)] if ch.comp else a)
        return np.stack(out, -1) if out else np.zeros((*self.spatial_shape, 0), np.float32)

    def read_scalars(
        self, traj: int, start: int = 0, stop: int | None = None, stride: int = 1
    ) -> dict[str, np.ndarray]:
        """Time-varying scalars of trajectory ``traj`` at frames ``start:stop:stride``:
        ``{name: float32 (T,)}``, names as ``scalar_names`` (time-constant ones are ``params``)."""
        self._check_traj(traj)
        f, sl = self._file(), slice(start, stop, stride)
        return {
            name: np.asarray(f[f"scalars/{name}"][(traj,) * per_sample + (sl,)], np.float32)
            for name, per_sample in self._scalars
        }

    def check_finite(self) -> None:
        """Raise ``ValueError`` naming the first trajectory (and frame) with NaN or Inf."""
        for i in range(self.n_traj):
            bad = ~np.isfinite(self.read(i))
            if bad.any():
                step = int(np.argmax(bad.reshape(bad.shape[0], -1).any(1)))
                raise ValueError(
                    f"{self.path}: non-finite values (NaN/Inf) in trajectory {i} "
                    f"(first at frame {step})"
                )

    def load(self, check_finite: bool = True) -> TrajectorySet:
        """All trajectories as a :class:`TrajectorySet` (the channels of :meth:`read`)."""
        dt = self.dt
        data = np.stack([self.read(i) for i in range(self.n_traj)]) if self.n_traj else None
        ts = TrajectorySet(
            system=self.system,
            data=data,
            field_names=self.field_names,
            dt=dt,
            coords=self.coords,
            bc=self.bc,
            params=self.params,
            constants=self.constants,
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


def read_well(
    path: str | os.PathLike, check_finite: bool = True, include_constants: bool = False
) -> TrajectorySet:
    """Load a Well-layout file into memory (NaN/Inf reported with the trajectory index)."""
    return WellFile(path, include_constants=include_constants).load(check_finite=check_finite)


def well_split_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The ``.hdf5`` / ``.h5`` files of one split, sorted by name (a stable order).

    Args:
        root: a dataset folder (files in ``<root>/data/<split>/``, The Well's layout) or the
            split folder itself (a folder holding the files).
        split: split name, e.g. ``train``.

    Raises:
        FileNotFoundError: no such split, or a split folder without files.
        ValueError: ``root`` is another split's folder (``.../data/train`` asked for ``valid``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    folder = root / "data" / split
    if not folder.is_dir():
        if root.name in SPLITS and root.name != split:
            raise ValueError(f"{root} is the split folder {root.name!r}, not {split!r}")
        if root.name != split and not _hdf5_files(root):
            data = root / "data"
            have = sorted(p.name for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
            raise FileNotFoundError(
                f"{root}: no split {split!r} (expected {folder}/*.hdf5; have: "
                f"{', '.join(have) or 'none'})"
            )
        folder = root
    files = _hdf5_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no *.hdf5 or *.h5 files (split {split!r})")
    return files


def _hdf5_files(folder: Path) -> list[Path]:
    # hidden names are the temporary files of an unfinished write
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix in (".hdf5", ".h5") and p.is_file() and not p.name.startswith(".")
    )


def open_well_split(
    root: str | os.PathLike, split: str, include_constants: bool = False
) -> list[WellFile]:
    """A :class:`WellFile` for each file of :func:`well_split_files`, in that order."""
    return [WellFile(p, include_constants) for p in well_split_files(root, split)]


SPLITS = ("train", "valid", "test")
"""Split names, as in The Well."""


def split_counts(n_traj: int, fractions=(0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """Trajectories per split; every split gets at least one when ``n_traj >= 3``."""
    if n_traj < 3:
        raise ValueError(f"need at least 3 trajectories for train/valid/test, got {n_traj}")
    n_valid = max(1, round(n_traj * fractions[1]))
    n_test = max(1, round(n_traj * fractions[2]))
    return n_traj - n_valid - n_test, n_valid, n_test


def write_dataset(
    ts: TrajectorySet,
    root: str | os.PathLike,
    settings: dict | None = None,
    fractions=(0.8, 0.1, 0.1),
) -> dict[str, Path]:
    """Split ``ts`` by trajectory order into train/valid/test files plus ``stats.yaml``.

    Statistics come from the train split only and serve every split (see
    :mod:`jaxfm.data.normalize`).

    Returns:
        ``{"train": path, "valid": path, "test": path, "stats": path}``.
    """
    from jaxfm.data.normalize import FieldStats

    root = Path(root) / ts.system
    counts = split_counts(ts.n_traj, fractions)
    bounds = np.cumsum((0, *counts))
    out = {}
    for split, a, b in zip(SPLITS, bounds[:-1], bounds[1:]):
        out[split] = write_well(
            ts.subset(slice(a, b)), root / "data" / split / f"{ts.system}.hdf5", settings
        )
    stats = FieldStats.from_trajectories(ts.subset(slice(0, counts[0])))
    out["stats"] = stats.save(root / "stats.yaml")
    return out
