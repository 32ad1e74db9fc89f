"""A test-only writer of ``torch.save``'s zip format, so the fast suite covers the torch-free
reader without torch (``test_torch_checkpoint.py`` checks once, with real torch, that
``torch.load`` reads what this writes and that the reader reads what ``torch.save`` writes).

It mirrors torch's serialization (``torch/serialization.py``, ``_save``): the object is
pickled with protocol 2 into ``PREFIX/data.pkl``; every numpy array becomes the reduce call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``
whose storage is the persistent id ``("storage", torch.<Type>Storage, key, "cpu", numel)``;
storages are written raw to ``PREFIX/data/<key>``, next to ``PREFIX/version`` and
``PREFIX/byteorder``. The pickler refers to those torch globals by name through stand-in
modules placed in ``sys.modules`` only while it runs.

:class:`View` writes a tensor that is a strided view into a larger storage (non-zero offset,
non-contiguous strides), as torch writes slices and transposes.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile

import ml_dtypes
import numpy as np

_TYPES = {
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class View:
    """A tensor ``storage[offset + sum(i_k * stride_k)]`` of the given size (element units)."""

    def __init__(self, storage: np.ndarray, offset: int, size: tuple, stride: tuple):
        flat = storage.ndim == 1 and storage.flags.c_contiguous
        self.storage = storage if flat else np.ascontiguousarray(storage).reshape(-1)
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)

    def value(self) -> np.ndarray:
        """The tensor's values, what a reader must return."""
        item = self.storage.itemsize
        return np.lib.stride_tricks.as_strided(
            self.storage[self.offset :], self.size, tuple(s * item for s in self.stride)
        ).copy()


@contextlib.contextmanager
def _torch_names():
    """Stand-in ``torch`` / ``torch._utils`` modules so pickle can name torch's globals."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # only its name is pickled
        raise AssertionError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in _TYPES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Tensor:
    def __init__(self, storage_id: int, view: View):
        self.storage_id, self.view = storage_id, view


class _Pickler(pickle.Pickler):
    def __init__(self, file, torch, storages: dict):
        super().__init__(file, protocol=2)
        self.torch, self.storages = torch, storages

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            contiguous = tuple(int(np.prod(obj.shape[i + 1 :])) for i in range(obj.ndim))
            obj = View(obj, 0, obj.shape, contiguous)
        if isinstance(obj, View):
            entry = (len(self.storages), obj.storage)
            key = str(self.storages.setdefault(id(obj.storage), entry)[0])
            storage = _StorageRef(key, obj.storage)
            args = (storage, obj.offset, obj.size, obj.stride, False, collections.OrderedDict())
            return self.torch._utils._rebuild_tensor_v2, args
        return NotImplemented

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            kind = getattr(self.torch, _TYPES[obj.array.dtype])
            return ("storage", kind, obj.key, "cpu", obj.array.size)
        return None


class _StorageRef:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


def write_torch_zip(path, obj, *, prefix: str = "archive") -> None:
    """Writes ``obj`` (dicts, lists, numbers, numpy arrays, :class:`View`) as ``torch.save``."""
    storages: dict[int, tuple[int, np.ndarray]] = {}
    buf = io.BytesIO()
    with _torch_names() as torch:
        _Pickler(buf, torch, storages).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", buf.getvalue())
        z.writestr(f"{prefix}/byteorder", "little")
        for key, array in storages.values():
            z.writestr(
                f"{prefix}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes()
            )
        z.writestr(f"{prefix}/version", "3\n")
