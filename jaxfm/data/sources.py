"""Random-access data sources for Grain: in-memory arrays and lazily opened HDF5 files.

A source is anything with ``__len__`` and ``__getitem__(i) -> dict[str, np.ndarray]`` and a
stable ``__repr__`` (Grain checks it when restoring an iterator). HDF5 handles cannot cross
a ``fork`` or be pickled into worker processes, so :class:`H5Source` opens its file on first
access in each process and drops the handle when pickled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import h5py
import numpy as np


class ArraySource:
    """Rows of equally long arrays: ``source[i] == {k: arrays[k][i]}``."""

    def __init__(self, arrays: Mapping[str, np.ndarray], name: str = "arrays"):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not lengths:
            raise ValueError(f"ArraySource {name!r} needs at least one array")
        if len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource {name!r}: arrays differ in length: {lengths}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.name = name
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for {self!r}")
        return {k: v[index] for k, v in self.arrays.items()}

    def __repr__(self) -> str:
        shapes = ",".join(f"{k}:{v.shape[1:]}:{v.dtype}" for k, v in sorted(self.arrays.items()))
        return f"ArraySource({self.name}, n={self._len}, {shapes})"


class H5Source:
    """Rows of datasets in one HDF5 file, read on demand: ``source[i][k] == f[path_k][i]``.

    Args:
      path: the HDF5 file.
      keys: output name -> dataset path inside the file (all with the same first dimension).
    """

    def __init__(self, path: str | os.PathLike, keys: Mapping[str, str] | Sequence[str]):
        self.path = os.fspath(path)
        self.keys = dict(keys) if isinstance(keys, Mapping) else {k: k for k in keys}
        self._file: h5py.File | None = None
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"HDF5 file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [p for p in self.keys.values() if p not in f]
                if missing:
                    raise KeyError(
                        f"{self.path}: missing dataset {missing[0]!r} (file has {sorted(f.keys())})"
                    )
                lengths = {k: f[p].shape[0] for k, p in self.keys.items()}
        except OSError as e:
            raise OSError(f"{self.path}: not a readable HDF5 file ({e})") from None
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{self.path}: datasets differ in length: {lengths}")
        self._len = next(iter(lengths.values()))

    def _open(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for {self!r}")
        f = self._open()
        return {k: np.asarray(f[p][index]) for k, p in self.keys.items()}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # never pickle an open handle into a worker
        return state

    def __repr__(self) -> str:
        return f"H5Source({self.path}, {sorted(self.keys.items())})"
