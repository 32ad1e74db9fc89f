"""The rules The Well's own checkers apply to one HDF5 file, as a list of violations.

A transcription (not a copy) of two scripts of PolymathicAI/the_well:

* ``scripts/check_thewell_formatting.py`` (``check_hdf5_format``): the layout. Its assertions
  stop at the first failure and two of its rules are only warnings (a boundary group not named
  after its ``bc_type`` or its ``associated_dims``); here every rule is collected and the
  warnings count as violations, because jaxfm writes ``<axis>_<type>`` names on purpose.
* ``scripts/check_thewell_data.py`` (``WellFileChecker``): the contents. A ``bc_type`` that is
  not upper case, ``spatial_dims`` not of length ``n_spatial_dims``, a frame with NaN, or a frame
  after the first that is constant in space (per component) are reported as issues there.

Each message starts with the rule's source, ``[format]`` or ``[data]``, so a failing test says
which upstream script would reject the file.
"""

from __future__ import annotations

import h5py
import numpy as np

FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_list(value) -> bool:
    return isinstance(value, (list, np.ndarray))


class _Checker:
    def __init__(self, f: h5py.File):
        self.f = f
        self.out: list[str] = []

    def fail(self, source: str, message: str) -> None:
        self.out.append(f"[{source}] {message}")

    # ------------------------------------------------------------------ root attributes

    def root(self) -> None:
        a = self.f.attrs
        for key, kind, ok in (
            ("dataset_name", "a string", lambda v: isinstance(v, str)),
            ("n_spatial_dims", "an integer", lambda v: isinstance(v, (int, np.integer))),
            ("n_trajectories", "an integer", lambda v: isinstance(v, (int, np.integer))),
            ("grid_type", "a string", lambda v: isinstance(v, str)),
        ):
            if key not in a:
                self.fail("format", f"'{key}' should be a root attribute")
            elif not ok(a[key]):
                self.fail("format", f"root attribute '{key}' should be {kind}, got {a[key]!r}")
        if "simulation_parameters" not in a:
            self.fail("format", "'simulation_parameters' should be a root attribute")
            return
        for key in np.atleast_1d(a["simulation_parameters"]):
            if not isinstance(key, str):
                self.fail("format", f"{key!r} in 'simulation_parameters' should be a string")
                continue
            if key not in a:
                self.fail("format", f"'{key}' (simulation_parameters) should be a root attribute")
            if "scalars" not in self.f or key not in self.f["scalars"]:
                self.fail("format", f"'{key}' (simulation_parameters) should be in /scalars")

    # ------------------------------------------------------------------ one dataset

    def dataset(self, group, key, *, spatial=False, field=False, bc=False, order=0) -> None:
        if key not in group:
            self.fail("format", f"{group.name} should contain '{key}'")
            return
        d = group[key]
        for attr in ("sample_varying", "time_varying"):
            if attr not in d.attrs:
                self.fail("format", f"{d.name} should have attribute '{attr}'")
                return
            if not _is_bool(d.attrs[attr]):
                self.fail("format", f"{d.name}: attribute '{attr}' should be a boolean")
        n_sp = int(self.f.attrs.get("n_spatial_dims", 0))
        dims = self.f["dimensions"] if "dimensions" in self.f else None
        spatial_dims = list(dims.attrs.get("spatial_dims", [])) if dims is not None else []
        if field:
            dv = d.attrs.get("dim_varying")
            if dv is None or not _is_list(dv) or len(dv) != n_sp:
                self.fail("format", f"{d.name}: 'dim_varying' should be a list of {n_sp} booleans")
                return
        if bc:
            if not self.bc_attrs(d, spatial_dims):
                return
        if dims is None or "time" not in dims:
            return
        expected = ()
        if d.attrs["sample_varying"]:
            expected += (int(self.f.attrs.get("n_trajectories", -1)),)
        if d.attrs["time_varying"]:
            expected += (dims["time"].shape[-1],)
        if field:
            for i, name in enumerate(spatial_dims):
                if d.attrs["dim_varying"][i] and name in dims:
                    expected += (dims[name].shape[-1],)
            expected += (n_sp,) * order
        if bc:
            for name in spatial_dims:
                if name in _strings(d.attrs["associated_dims"]) and name in dims:
                    expected += (dims[name].shape[-1],)
        current = d.shape[:-1] if spatial else d["mask"].shape if bc else d.shape
        if current != expected:
            self.fail("format", f"{d.name} has shape {current}, expected {expected}")

    def bc_attrs(self, g, spatial_dims) -> bool:
        kind = g.attrs.get("bc_type")
        if not isinstance(kind, str):
            self.fail("format", f"{g.name}: 'bc_type' should be a string attribute")
            return False
        if kind.lower() not in g.name:
            self.fail("format", f"{g.name} is not named after its bc_type {kind!r}")
        if kind != kind.upper():
            self.fail("data", f"{g.name}: bc_type {kind!r} should be upper case ({kind.upper()})")
        for attr in ("associated_fields", "associated_dims"):
            if attr not in g.attrs or not _is_list(g.attrs[attr]):
                self.fail("format", f"{g.name}: '{attr}' should be a list of strings")
                return False
        for name in _strings(g.attrs["associated_dims"]):
            if name not in spatial_dims:
                self.fail("format", f"{g.name}: associated dim {name!r} not in spatial_dims")
            if name not in g.name:
                self.fail("format", f"{g.name} is not named after its associated dim {name!r}")
        if "mask" not in g:
            self.fail("format", f"{g.name} should contain a 'mask' dataset")
            return False
        return True

    # ------------------------------------------------------------------ groups

    def dimensions(self) -> None:
        if "dimensions" not in self.f:
            self.fail("format", "'dimensions' should be a root group")
            return
        g = self.f["dimensions"]
        self.dataset(g, "time")
        names = g.attrs.get("spatial_dims")
        if names is None or not _is_list(names):
            self.fail("format", "dimensions should have a list attribute 'spatial_dims'")
            return
        if len(names) != self.f.attrs.get("n_spatial_dims"):
            self.fail("format", "dimensions/spatial_dims should have n_spatial_dims entries")
            self.fail("data", "spatial dimensions do not match n_spatial_dims")
        for name in names:
            if not isinstance(name, str):
                self.fail("format", f"{name!r} in spatial_dims should be a string")
                continue
            self.dataset(g, name, spatial=True)

    def named_group(self, key: str, **kw) -> None:
        if key not in self.f:
            self.fail("format", f"'{key}' should be a root group")
            return
        g = self.f[key]
        names = g.attrs.get("field_names")
        if names is None or not _is_list(names):
            self.fail("format", f"{g.name} should have a list attribute 'field_names'")
            return
        for name in names:
            if not isinstance(name, str):
                self.fail("format", f"{name!r} in {g.name}/field_names should be a string")
                continue
            self.dataset(g, name, **kw)

    def boundaries(self) -> None:
        if "boundary_conditions" not in self.f:
            self.fail("format", "'boundary_conditions' should be a root group")
            return
        g = self.f["boundary_conditions"]
        for key in g:
            self.dataset(g, key, bc=True)

    # ------------------------------------------------------------------ contents

    def frames(self) -> None:
        """NaN frames and frames (after the first) constant in space, per component."""
        n_sp = int(self.f.attrs.get("n_spatial_dims", 0))
        for group in FIELD_GROUPS:
            if group not in self.f:
                continue
            for d in self.f[group].values():
                if not d.attrs.get("time_varying", False):
                    continue
                lead = 2 if d.attrs.get("sample_varying", True) else 1
                a = np.asarray(d[...])
                if lead == 1:
                    a = a[None]
                spatial = a.shape[2 : 2 + n_sp]
                for traj in range(a.shape[0]):
                    for t in range(a.shape[1]):
                        comps = np.moveaxis(a[traj, t].reshape(*spatial, -1), -1, 0)
                        for c, frame in enumerate(comps):
                            if np.isnan(frame).any():
                                self.fail("data", f"{d.name}: NaN in trajectory {traj} frame {t}")
                            elif t > 0 and np.allclose(frame, frame.flat[0]):
                                self.fail(
                                    "data",
                                    f"{d.name}: component {c} constant in space in trajectory "
                                    f"{traj} frame {t}",
                                )


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def well_violations(path) -> list[str]:
    """Every rule of The Well's two checkers that the file at ``path`` breaks (empty: passes)."""
    with h5py.File(path, "r") as f:
        c = _Checker(f)
        c.root()
        c.dimensions()
        for i, group in enumerate(FIELD_GROUPS):
            c.named_group(group, field=True, order=i)
        c.named_group("scalars")
        c.boundaries()
        c.frames()
        return c.out


STATS_KEYS = ("mean", "std", "mean_delta", "std_delta", "rms", "rms_delta")
"""What the_well's ``ZScoreNormalization`` (mean, std, mean_delta, std_delta) and
``RMSNormalization`` (rms, rms_delta) read from ``stats.yaml``."""


def stats_violations(stats: dict, path) -> list[str]:
    """What The Well's normalisation (``the_well/data/normalization.py``) would miss in ``stats``.

    ``WellDataset`` (``the_well/data/datasets.py``) names each field of ``t{0,1,2}_fields`` of
    the file at ``path`` by its dataset name: time-varying ones need every key of
    :data:`STATS_KEYS`, time-constant ones ``mean``, ``std`` and ``rms``; a value is a number
    for a t0 field, a list of ``n_spatial_dims`` numbers for t1, nested lists for t2 (it is
    broadcast against the field's trailing component axes).
    """
    out = []
    with h5py.File(path, "r") as f:
        n_sp = int(f.attrs["n_spatial_dims"])
        for order, group in enumerate(FIELD_GROUPS):
            for name in _strings(f[group].attrs["field_names"]):
                varying = bool(f[group][name].attrs["time_varying"])
                keys = STATS_KEYS if varying else ("mean", "std", "rms")
                for key in keys:
                    table = stats.get(key)
                    if not isinstance(table, dict) or name not in table:
                        out.append(f"[stats] {key}: no entry for field {name!r} ({group})")
                        continue
                    shape = np.shape(table[name])
                    if shape != (n_sp,) * order:
                        out.append(
                            f"[stats] {key}[{name!r}] has shape {shape}, expected "
                            f"{(n_sp,) * order} ({group})"
                        )
    return out
