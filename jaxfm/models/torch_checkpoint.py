"""Reads ``torch.save`` checkpoint files into numpy arrays, without torch and without running
arbitrary pickled code.

Design note. Since torch 1.6, ``torch.save`` writes a zip archive: ``PREFIX/data.pkl`` (a
pickle, protocol 2, of the saved object) and one entry ``PREFIX/data/KEY`` of raw bytes per
storage, plus ``PREFIX/byteorder`` (``little`` or ``big``; absent in files of older torch,
which wrote little-endian). Inside the pickle a tensor is the call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[,
metadata])`` whose ``storage`` is a persistent id ``("storage", torch.FloatStorage, KEY,
location, numel)``; the storage type names the element type.

Unpickling runs any global a file names, so a checkpoint from the internet is code. The
:class:`_RestrictedUnpickler` here resolves only the tensor-rebuild function, the storage
types and ``collections.OrderedDict`` (a ``state_dict`` is one), each to a local stand-in that
builds numpy arrays; every other global raises :class:`UnsafeCheckpointError` naming the file
and the global. Offsets, sizes and strides are checked against the storage before a view is
taken, so a malformed file cannot read outside its own bytes.

The legacy (pre-1.6, non-zip) format is not read.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

#: torch storage type name -> numpy element type (the types ``torch.save`` records).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class TorchCheckpointError(ValueError):
    """A file that is not a readable ``torch.save`` zip archive."""


class UnsafeCheckpointError(TorchCheckpointError):
    """The pickle names a global outside the tensor-rebuild allow-list."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only its element type matters."""

    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


class _Storage:
    """One storage's elements, a flat numpy array."""

    def __init__(self, array: np.ndarray, key: str):
        self.array, self.key = array, key


def _rebuild_tensor(path: str):
    """The stand-in of ``torch._utils._rebuild_tensor_v2`` for file ``path``."""

    def rebuild(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not isinstance(storage, _Storage):
            raise TorchCheckpointError(f"{path}: tensor without a storage ({type(storage)})")
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        offset = int(offset)
        if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
            raise TorchCheckpointError(
                f"{path}: storage {storage.key}: bad size {size} / stride {stride} / "
                f"offset {offset}"
            )
        n = storage.array.size
        if 0 not in size:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= n:
                raise TorchCheckpointError(
                    f"{path}: storage {storage.key} has {n} elements; tensor of size {size}, "
                    f"stride {stride}, offset {offset} reaches element {last}"
                )
        base = storage.array[offset:] if 0 not in size else storage.array[:0]
        item = storage.array.itemsize
        view = np.lib.stride_tricks.as_strided(
            base, shape=size, strides=tuple(st * item for st in stride), writeable=False
        )
        return np.array(view, order="C")  # a contiguous copy, detached from the storage

    return rebuild


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch zip archive into numpy arrays (allow-listed globals)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.path, self.byteorder = archive, prefix, path, byteorder
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor(self.path)
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"{self.path}: refusing to unpickle global {module}.{name} (only tensors, their "
            f"storages and OrderedDict are allowed)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchCheckpointError(f"{self.path}: unknown persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType):
            raise TorchCheckpointError(f"{self.path}: storage {key} has no storage type")
        key = str(key)
        if key not in self._storages:
            entry = f"{self.prefix}data/{key}"
            try:
                raw = self.archive.read(entry)
            except KeyError:
                raise TorchCheckpointError(f"{self.path}: missing storage entry {entry}") from None
            dtype = kind.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
            if len(raw) != int(numel) * dtype.itemsize:
                raise TorchCheckpointError(
                    f"{self.path}: storage {key} holds {len(raw)} bytes, expected {numel} "
                    f"{kind.name} elements"
                )
            array = np.frombuffer(raw, dtype).astype(kind.dtype)  # native byte order
            self._storages[key] = _Storage(array, key)
        return self._storages[key]


def _prefix(names: list[str], path: str) -> str:
    pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise TorchCheckpointError(
            f"{path}: not a torch.save zip archive (expected one PREFIX/data.pkl entry, "
            f"found {len(pkls)})"
        )
    return pkls[0][: -len("data.pkl")]


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """The object saved by ``torch.save`` in ``path``, tensors as numpy arrays.

    Raises:
      FileNotFoundError: no such file.
      TorchCheckpointError: not a torch zip archive, or a malformed or corrupt one.
      UnsafeCheckpointError: the pickle names a global outside the allow-list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise TorchCheckpointError(
            f"{path}: not a torch.save zip archive (files of torch < 1.6, written without "
            f"zip serialization, are not read)"
        )
    try:
        return _read_archive(path)
    except (zipfile.BadZipFile, zlib.error) as e:  # a damaged member: CRC or deflate error
        raise TorchCheckpointError(f"{path}: corrupt zip archive ({e})") from None


def _read_archive(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        prefix = _prefix(archive.namelist(), path)
        try:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        except KeyError:
            byteorder = "little"
        if byteorder not in ("little", "big"):
            raise TorchCheckpointError(f"{path}: unknown byteorder {byteorder!r}")
        with archive.open(f"{prefix}data.pkl") as f:
            try:
                return _RestrictedUnpickler(f, archive, prefix, path, byteorder).load()
            except TorchCheckpointError:
                raise
            except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as e:
                raise TorchCheckpointError(f"{path}: malformed data.pkl ({e})") from None
