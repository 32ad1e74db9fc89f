"""The data sources of a surrogate run: files, dataset directories and simulators, per system.

``data.paths`` lists the sources (when it is empty, ``data.systems`` does): each entry is an
existing path (resolved by :func:`jaxfm.data.catalog.resolve_path`: a Well dataset directory,
a root of them, a folder of HDF5 files, a single Well or PDEBench file) or, when no such path
exists, the name of a built-in simulator (``jaxfm.data.sim.registry.SIMULATORS``). Everything
stays on disk: windows and rollouts read the frames they need.

What each split is for:

* **train**: training windows (the system mixture).
* **valid**: the one-step eval windows during training, and the held-out trajectories of the
  rollout evaluation that ends a run (the first ``data.n_rollout`` of them).
* **test**: only for final scoring, ``surrogate_rollout --rollout.split test``; never seen
  while training or choosing a run.

Where the splits come from:

* a Well dataset directory: its split folders ``data/{train,valid,test}/`` (test optional);
* a single file (Well or PDEBench layout): its trajectories in file order, 80/10/10
  (:func:`jaxfm.data.catalog.trajectory_split`: at least one per split; two trajectories give
  train and valid only);
* a simulator: ``data.n_train`` trajectories to train, the next ``data.n_eval`` to valid
  (simulated once, cached as a Well file under ``data.cache_dir``); no test split.
  ``data.n_train`` / ``data.n_eval`` count simulated trajectories only: files keep all theirs.

Sources of one system name (two files of ``navier_stokes``) are joined split by split; they
must agree on fields, frames per trajectory, grid and boundary conditions.

One run, one grid: every source must have the same 2-D grid (the mixture stacks one batch
from one array shape); a different grid is refused with both paths named. Different channel
counts are fine: every example is padded to ``data.pad_fields`` channels, and a source with
more fields is refused naming the file and ``data.pad_fields``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from jaxfm.data.catalog import (
    DataEntry,
    DataPathError,
    TrajectoryConcat,
    TrajectorySlice,
    resolve_path,
)
from jaxfm.data.fields import (
    NameRegistry,
    canonical_field_names,
    default_field_registry,
    default_system_registry,
)
from jaxfm.data.sim.registry import SIMULATORS, simulate
from jaxfm.data.well import SPLITS, WellFile, write_well

ROLLOUT_SPLITS = ("valid", "test")
"""Splits the rollout evaluation can score."""


@dataclasses.dataclass
class SystemData:
    """One system's lazy trajectories per split, joined over every source that holds it.

    Attributes:
        system: system name.
        origins: the paths (or ``simulator <name>``) it came from.
        splits: ``{"train", "valid", "test"}`` -> lazy trajectory collection or ``None``.
    """

    system: str
    origins: list[str]
    splits: dict

    @property
    def train(self):
        """The training trajectories."""
        return self.splits["train"]

    @property
    def field_names(self) -> tuple[str, ...]:
        """Channel names."""
        return tuple(self.train.field_names)

    @property
    def bc(self) -> tuple[str, ...]:
        """Boundary condition per spatial axis."""
        return tuple(self.train.bc)

    def split(self, name: str):
        """The trajectories of split ``name``; an absent split is an error naming the sources."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; choose one of {SPLITS}")
        trajs = self.splits.get(name)
        if trajs is None:
            raise DataPathError(
                f"{self.system} ({', '.join(self.origins)}) has no {name} split "
                f"(a simulator has train and valid only; a file of 2 trajectories has no test)"
            )
        return trajs


# ----------------------------------------------------------------------------- simulators


def simulated_file(name: str, n_traj: int, d, cache_dir: str) -> Path:
    """The cache file of ``n_traj`` trajectories of simulator ``name``, simulated if missing.

    Args:
        name: a simulator name.
        n_traj: trajectories.
        d: the data config (``resolution``, ``n_steps``, ``seed``).
        cache_dir: where the Well-layout cache files live.
    """
    over = {"resolution": d.resolution, **({"n_steps": d.n_steps} if d.n_steps else {})}
    tag = f"{name}_r{d.resolution}_t{d.n_steps or 'def'}_n{n_traj}_s{d.seed}.h5"
    path = Path(cache_dir) / tag
    if not path.exists():
        try:  # before minutes of simulation: a cache that cannot be written fails now
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataPathError(
                f"data.cache_dir {cache_dir!r}: cannot create it ({e.strerror or e})"
            ) from None
        ts = simulate(name, n_traj, d.seed, **over)
        ts.check_finite(f"{name} simulation")
        write_well(ts, path)
    return path


def simulator_entry(name: str, d, cache_dir: str) -> DataEntry:
    """Simulator ``name``: the first ``d.n_train`` trajectories train, the next ``d.n_eval``
    valid (read lazily from the cache file)."""
    trajs = WellFile(simulated_file(name, d.n_train + d.n_eval, d, cache_dir))
    splits = {
        "train": TrajectorySlice(trajs, 0, d.n_train),
        "valid": TrajectorySlice(trajs, d.n_train, d.n_train + d.n_eval),
        "test": None,
    }
    return DataEntry(f"simulator {name}", "simulator", splits)


# ----------------------------------------------------------------------------- resolution


def source_names(d) -> tuple[str, ...]:
    """The run's source strings: ``data.paths``, or ``data.systems`` when it is empty."""
    return tuple(d.paths) if d.paths else tuple(d.systems)


def resolve_entry(text: str, d, cache_dir: str, progress: bool = True) -> list[DataEntry]:
    """The entries of one source string: an existing path, else a simulator name."""
    if os.path.exists(text):
        return resolve_path(text, progress)
    if text in SIMULATORS:
        return [simulator_entry(text, d, cache_dir)]
    raise DataPathError(
        f"data source {text!r} is neither an existing file or directory nor a built-in "
        f"simulator (simulators: {', '.join(SIMULATORS)})"
    )


def join_by_system(entries: Sequence[DataEntry]) -> list[SystemData]:
    """Entries grouped by system (first appearance order), each split joined end to end."""
    groups: dict[str, list[DataEntry]] = {}
    for e in entries:
        groups.setdefault(e.system, []).append(e)
    out = []
    for system, group in groups.items():
        splits = {}
        for split in SPLITS:
            parts = [e.splits[split] for e in group if e.splits.get(split) is not None]
            if not parts:
                splits[split] = None
            elif len(parts) == 1:
                splits[split] = parts[0]
            else:
                splits[split] = TrajectoryConcat(parts, f"{system} {split}")
        out.append(SystemData(system, [e.origin for e in group], splits))
    return out


def check_sources(systems: Sequence[SystemData], pad_fields: int) -> None:
    """Refuse what one run cannot train on: not 2-D, more fields than ``data.pad_fields``,
    or grids that differ between sources (each message names the sources and the key)."""
    if not systems:
        raise DataPathError("no data sources: set data.paths or data.systems")
    first = systems[0]
    for s in systems:
        where = f"{s.system} ({', '.join(s.origins)})"
        shape = tuple(s.train.spatial_shape)
        if len(shape) != 2:
            raise DataPathError(
                f"{where}: {len(shape)}-D grid {shape}; the surrogates train on 2-D data"
            )
        if len(s.field_names) > pad_fields:
            raise DataPathError(
                f"{where}: {len(s.field_names)} fields {list(s.field_names)} but "
                f"data.pad_fields = {pad_fields}; raise data.pad_fields to {len(s.field_names)}"
            )
        if shape != tuple(first.train.spatial_shape):
            raise DataPathError(
                f"{where} has grid {shape} but {first.system} ({', '.join(first.origins)}) has "
                f"{tuple(first.train.spatial_shape)}; one run trains on one grid (resample the "
                "data, or train on each grid in its own run)"
            )


def resolve_sources(d, cache_dir: str, progress: bool = True) -> list[SystemData]:
    """Every source of data config ``d``, per system, checked (see the module docstring)."""
    entries = [e for text in source_names(d) for e in resolve_entry(text, d, cache_dir, progress)]
    systems = join_by_system(entries)
    check_sources(systems, d.pad_fields)
    return systems


# ----------------------------------------------------------------------------- registries


def run_registry(
    default: NameRegistry, found: Sequence[str], saved: Sequence[tuple[str, Sequence[str]]] = ()
) -> NameRegistry:
    """``default``, then the names of every saved registry, then ``found``, each appended once;
    raises unless the result keeps every saved id (a renumbered vocabulary, say a renamed
    built-in field, would pair old rows with the wrong fields).

    Args:
        default: the built-in registry (copied, not changed).
        found: names in this run's data, in source order.
        saved: ``(checkpoint, names)`` of registries stored with checkpoints this run builds
            on (resume, init_from, rollout evaluation); the checkpoint is named in the error.
    """
    reg = NameRegistry(default.names, kind=default.kind)
    if default.kind == "field":  # a field renamed since the save keeps its id
        saved = [(where, canonical_field_names(names)) for where, names in saved]
    for _, names in saved:
        reg.extend(names)
    reg.extend(found)
    for where, names in saved:
        try:
            reg.check_extends(NameRegistry(names, kind=default.kind))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return reg


def field_registry(
    systems: Sequence[SystemData], saved: Sequence[tuple[str, Sequence[str]]] = ()
) -> NameRegistry:
    """The run's field registry: built-in fields, saved ones, then new ones from the data."""
    found = [f for s in systems for f in s.field_names]
    return run_registry(default_field_registry(), found, saved)


def system_registry(
    systems: Sequence[SystemData], saved: Sequence[tuple[str, Sequence[str]]] = ()
) -> NameRegistry:
    """The run's system registry: built-in systems, saved ones, then new ones from the data."""
    return run_registry(default_system_registry(), [s.system for s in systems], saved)
