"""Lazy package exports (PEP 562), so a package's ``__init__`` imports nothing heavy.

``jaxfm.train``, ``jaxfm.ckpt`` and ``jaxfm.parallel`` re-export their main names for
convenience, but importing a light submodule such as ``jaxfm.train.options`` (which every
experiment config needs) runs the package's ``__init__`` first: with eager re-exports that
would start Orbax and Grain for anyone who only wants to parse a config.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """(``__all__``, ``__getattr__``, ``__dir__``) for ``package``, where ``exports`` maps
    each exported name to the submodule that defines it."""
    names = sorted(exports)

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(importlib.import_module(package))))

    return names, __getattr__, __dir__
