"""Data on disk, found from a path: The Well dataset directories, single Well or PDEBench files.

:func:`resolve_path` turns one path into :class:`DataEntry` records, each a system's
trajectories per split, every one of them a *lazy* trajectory collection (nothing is loaded;
frames are read when a window asks for them):

=====================================  ===========================================================
path                                   entries
=====================================  ===========================================================
a Well dataset directory               one; its ``data/{train,valid,test}/*.hdf5`` split folders
(``<dir>/data/<split>/*.hdf5``)        (``stats.yaml`` beside ``data/`` is not needed)
a root of dataset directories          one per dataset directory below it (``make data``'s
(``<root>/<name>/data/...``)           corpus: ``runs/data``)
a directory of HDF5 files              one per file, each as a single file (below)
a single Well-layout HDF5 file         one, split by trajectory (:func:`trajectory_split`)
a PDEBench HDF5 file                   one, split by trajectory
=====================================  ===========================================================

A file's layout is read from its content: The Well's has ``dimensions`` and ``t0_fields``
groups; anything else is handed to the PDEBench reader, which names the layouts it knows.

Lazy trajectory collections share the protocol of :class:`jaxfm.data.well.WellFile`
(``system``, ``field_names``, ``n_traj``, ``n_steps``, ``spatial_shape``, ``dt``, ``coords``,
``bc``, ``params``, ``read(traj, start, stop, stride)``, ``check_finite()``, ``load()``), so
:class:`jaxfm.data.windows.WindowSource` windows any of them: :class:`TrajectorySlice` (some
trajectories of one file) and :class:`TrajectoryConcat` (the files of one split folder).

Opening files reads their metadata only; a folder of many files prints a progress line with
the count and an ETA (:func:`open_files`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from jaxfm.data.pdebench import PDEBenchFile, PDEBenchFormatError
from jaxfm.data.trajectories import TrajectorySet
from jaxfm.data.well import SPLITS, WellFile, split_counts, well_split_files

HDF5_SUFFIXES = (".hdf5", ".h5")
"""File name endings taken for HDF5 files in a directory."""


class DataPathError(ValueError):
    """A data path that does not exist or holds nothing readable (the message names it)."""


# ----------------------------------------------------------------------------- lazy views


class TrajectorySlice:
    """Trajectories ``start:stop`` of a lazy trajectory collection, itself lazy.

    How a single file is split into train / valid / test without reading it.
    """

    def __init__(self, base, start: int, stop: int):
        if not 0 <= start <= stop <= base.n_traj:
            raise ValueError(
                f"{base.path}: trajectories {start}:{stop} out of range [0, {base.n_traj}]"
            )
        self.base, self.start, self.stop = base, start, stop
        for name in ("system", "field_names", "n_steps", "spatial_shape", "dt", "coords", "bc"):
            setattr(self, name, getattr(base, name))
        self.axis_names = tuple(getattr(base, "axis_names", ("x", "y", "z")[: len(self.coords)]))
        self.constants = dict(getattr(base, "constants", {}))
        self.params = {k: np.asarray(v)[start:stop] for k, v in base.params.items()}
        self.path = f"{base.path}[trajectories {start}:{stop}]"

    @property
    def n_traj(self) -> int:
        """Number of trajectories in the slice."""
        return self.stop - self.start

    @property
    def n_spatial_dims(self) -> int:
        """1, 2 or 3."""
        return len(self.spatial_shape)

    def __repr__(self) -> str:
        return f"TrajectorySlice({self.base!r}, {self.start}, {self.stop})"

    def read(self, traj: int, start: int = 0, stop: int | None = None, stride: int = 1):
        """Frames ``start:stop:stride`` of trajectory ``traj`` of the slice."""
        if not 0 <= traj < self.n_traj:
            raise IndexError(f"{self.path}: trajectory {traj} out of range [0, {self.n_traj})")
        return self.base.read(self.start + traj, start, stop, stride)

    def check_finite(self) -> None:
        """Raise ``ValueError`` naming the first trajectory with NaN or Inf."""
        _check_finite(self)

    def load(self) -> TrajectorySet:
        """The slice's trajectories in memory (small slices only)."""
        return _load(self)


class TrajectoryConcat:
    """Several lazy trajectory collections of one system, end to end (a split folder's files).

    The parts must agree on system, fields, frames per trajectory, grid and boundary
    conditions; the first difference is an error naming both files.
    """

    def __init__(self, parts: Sequence, name: str):
        if not parts:
            raise DataPathError(f"{name}: no trajectories")
        self.parts, self.path = list(parts), name
        first = parts[0]
        for p in parts[1:]:
            for key in ("system", "field_names", "n_steps", "spatial_shape", "bc"):
                a, b = getattr(first, key), getattr(p, key)
                if tuple(np.atleast_1d(a)) != tuple(np.atleast_1d(b)):
                    raise DataPathError(
                        f"{name}: {p.path} has {key} {b!r} but {first.path} has {a!r}; one "
                        f"dataset needs one {key}"
                    )
        for key in ("system", "field_names", "n_steps", "spatial_shape", "dt", "coords", "bc"):
            setattr(self, key, getattr(first, key))
        self.axis_names = tuple(getattr(first, "axis_names", ("x", "y", "z")[: len(self.coords)]))
        self.constants = dict(getattr(first, "constants", {}))
        self.offsets = np.cumsum([0] + [p.n_traj for p in self.parts])
        # parameters every part has (a file without one cannot fill its rows)
        keys = sorted(set.intersection(*(set(p.params) for p in self.parts)))
        self.params = {
            k: np.concatenate([np.asarray(p.params[k]) for p in self.parts]) for k in keys
        }

    @property
    def n_traj(self) -> int:
        """Trajectories of all parts."""
        return int(self.offsets[-1])

    @property
    def n_spatial_dims(self) -> int:
        """1, 2 or 3."""
        return len(self.spatial_shape)

    def __repr__(self) -> str:
        return f"TrajectoryConcat({[repr(p) for p in self.parts]})"

    def read(self, traj: int, start: int = 0, stop: int | None = None, stride: int = 1):
        """Frames ``start:stop:stride`` of trajectory ``traj`` (counted over all parts)."""
        if not 0 <= traj < self.n_traj:
            raise IndexError(f"{self.path}: trajectory {traj} out of range [0, {self.n_traj})")
        k = int(np.searchsorted(self.offsets, traj, side="right") - 1)
        return self.parts[k].read(traj - int(self.offsets[k]), start, stop, stride)

    def check_finite(self) -> None:
        """Raise ``ValueError`` naming the first file and trajectory with NaN or Inf."""
        for p in self.parts:
            p.check_finite()

    def load(self) -> TrajectorySet:
        """Every trajectory in memory (small collections only)."""
        return _load(self)


def _check_finite(trajs) -> None:
    for i in range(trajs.n_traj):
        bad = ~np.isfinite(trajs.read(i))
        if bad.any():
            step = int(np.argmax(bad.reshape(bad.shape[0], -1).any(1)))
            raise ValueError(
                f"{trajs.path}: non-finite values (NaN/Inf) in trajectory {i} "
                f"(first at frame {step})"
            )


def _load(trajs) -> TrajectorySet:
    return TrajectorySet(
        system=trajs.system,
        data=np.stack([trajs.read(i) for i in range(trajs.n_traj)]),
        field_names=trajs.field_names,
        dt=trajs.dt,
        coords=trajs.coords,
        bc=trajs.bc,
        params=trajs.params,
        constants=trajs.constants,
        axis_names=trajs.axis_names,
    )


# ----------------------------------------------------------------------------- files


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_well_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file in The Well's layout (by content, not by name)."""
    try:
        with h5py.File(path, "r") as f:
            return "dimensions" in f and "t0_fields" in f
    except OSError:
        raise DataPathError(f"{path}: not a readable HDF5 file") from None


def open_data_file(path: str | os.PathLike):
    """A lazy trajectory collection of one HDF5 file: a :class:`WellFile` or a
    :class:`PDEBenchFile` (whose layout is read from the keys)."""
    path = Path(path)
    if not path.is_file():
        raise DataPathError(f"{path}: no such file")
    if is_well_file(path):
        return WellFile(path)
    try:
        return PDEBenchFile(path)
    except PDEBenchFormatError as e:
        raise DataPathError(
            f"{e} (nor is it The Well's layout: no 'dimensions' and 't0_fields' groups)"
        ) from None


def open_files(
    paths: Sequence[Path],
    label: str,
    opener: Callable = open_data_file,
    progress: bool = True,
    every_s: float = 2.0,
) -> list:
    """Open ``paths`` (metadata only), printing count and ETA every ``every_s`` seconds.

    A dataset of thousands of files takes a while to index; the line says how long.
    """
    out, t0, last = [], time.perf_counter(), time.perf_counter()
    for i, p in enumerate(paths, 1):
        out.append(opener(p))
        now = time.perf_counter()
        if progress and len(paths) > 1 and (now - last >= every_s or i == len(paths)):
            el = now - t0
            eta = el / i * (len(paths) - i)
            _log(f"[{label}] indexed {i}/{len(paths)} files, {el:.1f} s elapsed, ETA {eta:.1f} s")
            last = now
    return out


# ----------------------------------------------------------------------------- entries


@dataclasses.dataclass
class DataEntry:
    """One system's trajectories from one path, per split (``None``: the path has no such split).

    Attributes:
        origin: the path the entry came from (for messages).
        kind: ``well_dataset``, ``well_file`` or ``pdebench_file``.
        splits: ``{"train": ..., "valid": ..., "test": ...}`` lazy trajectory collections.
    """

    origin: str
    kind: str
    splits: dict

    @property
    def system(self) -> str:
        """System name (from the files)."""
        return self.splits["train"].system


def trajectory_split(n_traj: int, where: str = "") -> tuple[int, int, int]:
    """(train, valid, test) trajectory counts of a single file, in trajectory order.

    80/10/10 as :func:`jaxfm.data.well.split_counts` (what ``jaxfm.data.generate`` writes),
    every split at least one trajectory; a file of two trajectories gives one to train and one
    to valid (no test); a file of one cannot hold any out.
    """
    if n_traj >= 3:
        return split_counts(n_traj)
    if n_traj == 2:
        return 1, 1, 0
    raise DataPathError(
        f"{where}: {n_traj} trajectory; a file needs at least 2 to hold one out for evaluation"
    )


def file_entry(trajs, kind: str) -> DataEntry:
    """A single file split by trajectory order (:func:`trajectory_split`)."""
    n_train, n_valid, n_test = trajectory_split(trajs.n_traj, str(trajs.path))
    bounds = np.cumsum((0, n_train, n_valid, n_test))
    splits = {
        s: TrajectorySlice(trajs, int(a), int(b)) if b > a else None
        for s, a, b in zip(SPLITS, bounds[:-1], bounds[1:])
    }
    return DataEntry(str(trajs.path), kind, splits)


def is_well_dataset(path: Path) -> bool:
    """True for a directory holding a ``data/`` folder of split folders."""
    return (path / "data").is_dir() and any((path / "data" / s).is_dir() for s in SPLITS)


def dataset_entry(root: Path, progress: bool = True) -> DataEntry:
    """A Well dataset directory: train, valid (and test, when present) split folders."""
    splits = {}
    for split in SPLITS:
        if split == "test" and not (root / "data" / split).is_dir():
            splits[split] = None  # test is optional
            continue
        try:
            files = well_split_files(root, split)
        except (FileNotFoundError, ValueError) as e:
            raise DataPathError(str(e)) from None
        opened = open_files(files, f"{root.name}/{split}", WellFile, progress)
        splits[split] = (
            opened[0] if len(opened) == 1 else TrajectoryConcat(opened, str(files[0].parent))
        )
    systems = {s: t.system for s, t in splits.items() if t is not None}
    if len(set(systems.values())) > 1:
        raise DataPathError(f"{root}: split folders hold different systems {systems}")
    return DataEntry(str(root), "well_dataset", splits)


def _file_kind(trajs) -> str:
    return "well_file" if isinstance(trajs, WellFile) else "pdebench_file"


def resolve_path(path: str | os.PathLike, progress: bool = True) -> list[DataEntry]:
    """The entries of one data path (see the module table)."""
    path = Path(path)
    if path.is_file():
        trajs = open_data_file(path)
        return [file_entry(trajs, _file_kind(trajs))]
    if not path.is_dir():
        raise DataPathError(f"{path}: no such file or directory")
    if is_well_dataset(path):
        return [dataset_entry(path, progress)]
    children = sorted(p for p in path.iterdir() if p.is_dir() and is_well_dataset(p))
    if children:
        return [dataset_entry(p, progress) for p in children]
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix in HDF5_SUFFIXES and not p.name.startswith(".")
    )  # hidden names: the temporary files of unfinished writes
    if files:
        opened = open_files(files, path.name, progress=progress)
        return [file_entry(t, _file_kind(t)) for t in opened]
    raise DataPathError(
        f"{path}: holds no data: neither a Well dataset (data/<split>/*.hdf5), a folder of "
        f"such datasets, nor HDF5 files ({', '.join(HDF5_SUFFIXES)})"
    )
