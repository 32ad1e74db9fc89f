"""The Well's HDF5 layout: writer, lazy reader, loader into :class:`TrajectorySet`.

File layout (Ohana et al., *The Well*, NeurIPS 2024 Datasets; ``docs/data_format.md`` of
PolymathicAI/the_well), float32, shapes ``(n_traj, n_steps, x, y[, d])``::

    /                     attrs: dataset_name, grid_type="cartesian", n_spatial_dims,
                                 n_trajectories, simulation_parameters (names),
                                 jaxfm_channel_order, jaxfm_constants (JSON), jaxfm_dt
    dimensions/           attrs: spatial_dims; datasets time (T,), x (X,), y (Y,)
    boundary_conditions/  <axis>_boundary/ attrs bc_type (periodic|wall|open),
                                 associated_dims, associated_fields; datasets mask, values
    scalars/              one dataset per per-trajectory parameter, shape (n_traj,),
                          attrs sample_varying=True, time_varying=False; attr field_names
    t0_fields/            scalar fields (B, T, X, Y); attr field_names
    t1_fields/            vector fields (B, T, X, Y, D): channels <name>_x, <name>_y grouped
    t2_fields/            tensor fields (B, T, X, Y, D, D) (read as <name>_xx, <name>_xy, ...)

Every dataset carries ``sample_varying`` / ``time_varying`` / ``dim_varying`` attributes as in
The Well. Directory layout written by :func:`write_dataset`::

    <root>/<system>/data/{train,valid,test}/<system>.hdf5
    <root>/<system>/stats.yaml     per-channel mean, std, mean_delta, std_delta of the train
                                   split (JSON text, which is valid YAML)

Writes are atomic: a temporary file in the same folder, then ``os.replace``. A missing or
mismatched key raises :class:`WellFormatError` naming the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from jaxfm.data.trajectories import BC_TYPES, TrajectorySet


class WellFormatError(ValueError):
    """A file that does not follow The Well's layout (message names the file and the key)."""


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _group_channels(field_names, axis_names):
    """Split channels into scalar (t0) and vector (t1) fields.

    Returns:
        ``(t0, t1)``: ``t0`` is a list of ``(name, channel)``; ``t1`` a list of
        ``(base, [channels])`` for bases whose every ``base_<axis>`` channel is present.
    """
    index = {n: i for i, n in enumerate(field_names)}
    t1, used = [], set()
    for name in field_names:
        base = name.rsplit("_", 1)[0]
        comps = [f"{base}_{a}" for a in axis_names]
        if "_" in name and base not in dict(t1) and all(c in index for c in comps):
            t1.append((base, [index[c] for c in comps]))
            used.update(comps)
    t0 = [(n, i) for i, n in enumerate(field_names) if n not in used]
    return t0, t1


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    axes = ts.axis_names
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["dataset_name"] = ts.system
            f.attrs["grid_type"] = "cartesian"
            f.attrs["n_spatial_dims"] = ts.n_spatial_dims
            f.attrs["n_trajectories"] = ts.n_traj
            f.attrs["simulation_parameters"] = list(ts.params)
            f.attrs["jaxfm_channel_order"] = list(ts.field_names)
            f.attrs["jaxfm_constants"] = json.dumps(ts.constants)
            f.attrs["jaxfm_dt"] = float(ts.dt)
            f.attrs["jaxfm_generator_settings"] = json.dumps(settings or {})
            dims = f.create_group("dimensions")
            dims.attrs["spatial_dims"] = list(axes)
            t = dims.create_dataset("time", data=ts.time)
            t.attrs["sample_varying"] = False
            for name, c in zip(axes, ts.coords):
                d = dims.create_dataset(name, data=c)
                d.attrs["sample_varying"] = False
                d.attrs["time_varying"] = False
            bcs = f.create_group("boundary_conditions")
            for name, c, bc in zip(axes, ts.coords, ts.bc):
                g = bcs.create_group(f"{name}_boundary")
                g.attrs["associated_dims"] = [name]
                g.attrs["associated_fields"] = []
                g.attrs["bc_type"] = bc
                g.attrs["sample_varying"] = False
                g.attrs["time_varying"] = False
                mask = np.zeros(len(c), bool)
                mask[[0, -1]] = True
                g.create_dataset("mask", data=mask)
                g.create_dataset("values", data=np.zeros(int(mask.sum()), np.float32))
            sc = f.create_group("scalars")
            sc.attrs["field_names"] = list(ts.params)
            for k, v in ts.params.items():
                d = sc.create_dataset(k, data=v.astype(np.float32))
                d.attrs["sample_varying"] = True
                d.attrs["time_varying"] = False
            t0, t1 = _group_channels(ts.field_names, axes)
            chunk = (1, 1, *ts.spatial_shape)  # one frame per chunk: windows read frames
            g0 = f.create_group("t0_fields")
            g0.attrs["field_names"] = [n for n, _ in t0]
            for n, i in t0:
                d = g0.create_dataset(n, data=ts.data[..., i], chunks=chunk)
                _field_attrs(d, ts.n_spatial_dims)
            g1 = f.create_group("t1_fields")
            g1.attrs["field_names"] = [b for b, _ in t1]
            for b, idx in t1:
                d = g1.create_dataset(b, data=ts.data[..., idx], chunks=(*chunk, len(idx)))
                _field_attrs(d, ts.n_spatial_dims)
            g2 = f.create_group("t2_fields")
            g2.attrs["field_names"] = []
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _field_attrs(d, n_sp):
    d.attrs["dim_varying"] = [True] * n_sp
    d.attrs["sample_varying"] = True
    d.attrs["time_varying"] = True


def _str_list(value) -> list[str]:
    if isinstance(value, (str, bytes)):
        value = [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in value]


class WellFile:
    """Lazy random access to one Well-layout file; h5py is opened on first read in each process.

    Pickles without the open handle, so Grain worker processes each open their own.

    Args:
        path: the ``.hdf5`` file.

    Attributes (read from the file on construction, which validates the layout):
        system, field_names, n_traj, n_steps, spatial_shape, dt, coords, bc, params, constants.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._h5 = None
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        with h5py.File(self.path, "r") as f:
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
        self.n_traj = int(self._attr(f, "n_trajectories", "/"))
        n_sp = int(self._attr(f, "n_spatial_dims", "/"))
        dims = self._need(f, "dimensions")
        axes = _str_list(self._attr(dims, "spatial_dims", "dimensions"))
        if len(axes) != n_sp:
            raise WellFormatError(
                f"{self.path}: dimensions.spatial_dims {axes} does not match n_spatial_dims {n_sp}"
            )
        self.axis_names = tuple(axes)
        time = np.asarray(self._need(f, "dimensions/time"), np.float64)
        self.coords = tuple(np.asarray(self._need(f, f"dimensions/{a}")) for a in axes)
        self.spatial_shape = tuple(len(c) for c in self.coords)
        self.n_steps = len(time)
        self.dt = float(f.attrs.get("jaxfm_dt", time[1] - time[0] if len(time) > 1 else 1.0))
        bcs = self._need(f, "boundary_conditions")
        bc = ["open"] * n_sp
        for name in bcs:
            g = bcs[name]
            kind = str(self._attr(g, "bc_type", f"boundary_conditions/{name}")).lower()
            if kind not in BC_TYPES:
                raise WellFormatError(
                    f"{self.path}: boundary_conditions/{name} bc_type {kind!r} not in {BC_TYPES}"
                )
            for a in _str_list(self._attr(g, "associated_dims", f"boundary_conditions/{name}")):
                if a in axes:
                    bc[axes.index(a)] = kind
        self.bc = tuple(bc)
        # Channels: (group, dataset, component index or None, channel name).
        channels = []
        for order, group in enumerate(("t0_fields", "t1_fields", "t2_fields")):
            g = self._need(f, group)
            for name in _str_list(self._attr(g, "field_names", group)):
                d = self._need(f, f"{group}/{name}")
                expect = (self.n_traj, self.n_steps, *self.spatial_shape) + (n_sp,) * order
                if d.shape != expect:
                    raise WellFormatError(
                        f"{self.path}: {group}/{name} has shape {d.shape}, expected {expect} "
                        f"(n_trajectories, time, {', '.join(axes)}{', d' * order})"
                    )
                if order == 0:
                    channels.append((group, name, (), name))
                else:
                    for comp in np.ndindex(*(n_sp,) * order):
                        suffix = "".join(axes[c] for c in comp)
                        channels.append((group, name, comp, f"{name}_{suffix}"))
        if "jaxfm_channel_order" in f.attrs:
            order = _str_list(f.attrs["jaxfm_channel_order"])
            by_name = {c[3]: c for c in channels}
            if sorted(order) != sorted(by_name):
                raise WellFormatError(
                    f"{self.path}: jaxfm_channel_order {order} does not match fields "
                    f"{sorted(by_name)}"
                )
            channels = [by_name[n] for n in order]
        self._channels = channels
        self.field_names = tuple(c[3] for c in channels)
        params = {}
        if "scalars" in f:
            for name in f["scalars"]:
                v = np.asarray(f["scalars"][name], np.float64).reshape(-1)
                if v.shape == (self.n_traj,):
                    params[name] = v
                elif v.size == 1:
                    params[name] = np.full(self.n_traj, v[0])
        for name in _str_list(f.attrs.get("simulation_parameters", [])):
            if name not in params and name in f.attrs:
                params[name] = np.full(self.n_traj, float(f.attrs[name]))
        self.params = params
        self.constants = json.loads(f.attrs.get("jaxfm_constants", "{}"))
        self.settings = json.loads(f.attrs.get("jaxfm_generator_settings", "{}"))

    def _file(self):
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def read(self, traj: int, start: int = 0, stop: int | None = None, stride: int = 1):
        """Frames ``start:stop:stride`` of trajectory ``traj``, float32 ``(T, *spatial, C)``."""
        if not 0 <= traj < self.n_traj:
            raise IndexError(f"{self.path}: trajectory {traj} out of range [0, {self.n_traj})")
        f = self._file()
        sl = slice(start, stop, stride)
        cache, out = {}, []
        for group, name, comp, _ in self._channels:
            key = f"{group}/{name}"
            if key not in cache:
                cache[key] = np.asarray(f[key][traj, sl], np.float32)
            a = cache[key]
            out.append(a[(..., *comp)] if comp else a)
        return np.stack(out, -1)

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
        """All trajectories as a :class:`TrajectorySet`."""
        data = np.stack([self.read(i) for i in range(self.n_traj)]) if self.n_traj else None
        ts = TrajectorySet(
            system=self.system,
            data=data,
            field_names=self.field_names,
            dt=self.dt,
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


def read_well(path: str | os.PathLike, check_finite: bool = True) -> TrajectorySet:
    """Load a Well-layout file into memory (NaN/Inf reported with the trajectory index)."""
    return WellFile(path).load(check_finite=check_finite)


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
