"""Write a file whole or not at all: into a temporary name in the same folder, then
``os.replace`` (atomic on POSIX). A kill or SIGTERM in the middle leaves the old file, or
none, never a half-written one a later reader would trip over."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path to write; on success it replaces ``path``, on error it goes."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
