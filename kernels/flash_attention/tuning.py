"""Block sizes per device kind for the flash-attention kernels: the tables and their lookup.

Two layers, both keyed ``device_kind -> impl -> "d{head_dim}"`` (``impl`` in ``pallas``,
``triton``; each entry a :class:`BlockSizes`):

* the **shipped table**, ``tuning_table.json`` beside this file: read-only package data. Its
  ``"default"`` device entries are conservative sizes that compile on any NVIDIA GPU with
  >= 100 KB shared memory (64 x 64 tiles, FA2's usual choice for D <= 128) and keep interpret
  mode on CPU affordable;
* an optional **user table**, a file of the same layout (no ``"default"`` entry needed), named
  by the ``table=`` argument of :func:`get_block_sizes` or by the ``JAXFM_TUNING_TABLE``
  environment variable. Its entries replace the shipped ones key by key.

Lookup for ``(impl, head_dim, kind)``: the first entry found among ``kind/impl/d{head_dim}``,
``kind/impl/default``, ``default/impl/d{head_dim}``, ``default/impl/default`` in the layered
table, else :class:`BlockSizes`'s own defaults. A table that is not valid JSON, has the wrong
shape or holds an invalid entry raises ``ValueError`` naming the file.

The autotune command that writes user tables is ``python -m kernels.flash_attention.autotune``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax

SHIPPED_TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tuning_table.json")
TABLE_ENV = "JAXFM_TUNING_TABLE"
IMPLS = ("pallas", "triton")


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes and launch parameters of one flash-attention kernel family."""

    block_q: int = 64
    """Query rows per program in the forward and in the dq kernel."""
    block_k: int = 64
    """Key rows per inner-loop step in the forward and in the dq kernel."""
    block_q_bwd: int = 64
    """Query rows per inner-loop step in the dk/dv kernel."""
    block_k_bwd: int = 64
    """Key rows per program in the dk/dv kernel."""
    num_warps: int = 4
    """Warps per program (GPU only; ignored in interpret mode)."""
    num_stages: int = 2
    """Software-pipelining stages of the inner loop (GPU only)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BlockSizes.{f.name} must be a positive int, got {value!r}")
        for name in ("block_q", "block_k", "block_q_bwd", "block_k_bwd"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                # Triton's tl.dot needs power-of-two tiles of at least 16.
                raise ValueError(f"BlockSizes.{name} must be a power of two >= 16, got {value}")


def _validate(table, path: str, *, shipped: bool) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"tuning table {path}: expected a JSON object of device kinds")
    if shipped and "default" not in table:
        raise ValueError(f"tuning table {path}: expected a 'default' device entry")
    for dev, per_impl in table.items():
        if not isinstance(per_impl, dict):
            raise ValueError(f"tuning table {path}: {dev!r} must map impls to head dims")
        for impl, per_d in per_impl.items():
            if impl not in IMPLS:
                raise ValueError(f"tuning table {path}: {dev}/{impl}: impl must be in {IMPLS}")
            if not isinstance(per_d, dict):
                raise ValueError(f"tuning table {path}: {dev}/{impl} must map 'dN' keys to entries")
            for key, entry in per_d.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"tuning table {path}: {dev}/{impl}/{key} is not an object")
                try:
                    BlockSizes(**entry)
                except (TypeError, ValueError) as e:
                    raise ValueError(
                        f"tuning table {path}: bad entry {dev}/{impl}/{key}: {e}"
                    ) from e
    return table


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int, shipped: bool) -> dict:
    del mtime_ns  # only part of the cache key: a rewritten file is read again
    try:
        with open(path) as f:
            table = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"tuning table {path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None
    return _validate(table, path, shipped=shipped)


def load_table(path: str, *, shipped: bool = False) -> dict:
    """Read and validate one table file (cached until the file changes); ``ValueError`` if bad."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as e:
        raise ValueError(f"tuning table {path}: cannot read it ({e.strerror})") from None
    return _load_cached(path, mtime, shipped)


def layered_table(table: str | None = None) -> dict:
    """The shipped table with the user table (``table``, else ``$JAXFM_TUNING_TABLE``) over it.

    Entries replace shipped ones key by key (``kind/impl/dN``). A fresh dict on every call.
    """
    shipped = load_table(SHIPPED_TABLE_PATH, shipped=True)
    user_path = table if table is not None else os.environ.get(TABLE_ENV) or None
    layers = [shipped] if user_path is None else [shipped, load_table(user_path)]
    merged: dict[str, dict[str, dict]] = {}
    for layer in layers:
        for dev, per_impl in layer.items():
            for impl, per_d in per_impl.items():
                merged.setdefault(dev, {}).setdefault(impl, {}).update(per_d)
    return merged


def device_kind() -> str:
    """The ``device_kind`` of the first device of the default backend (e.g. 'NVIDIA H100')."""
    return jax.devices()[0].device_kind


def get_block_sizes(
    impl: str, head_dim: int, kind: str | None = None, *, table: str | None = None
) -> BlockSizes:
    """Look up tuned block sizes for ``impl`` at ``head_dim`` on a device kind.

    Args:
      impl: ``"pallas"`` or ``"triton"``.
      head_dim: head dimension D (the key is ``"d{D}"``; unknown D uses ``"default"``).
      kind: device kind; defaults to the current default device's kind.
      table: a user table layered over the shipped one; defaults to ``$JAXFM_TUNING_TABLE``.

    Returns:
      The most specific entry (see the module docstring for the order).
    """
    if impl not in IMPLS:
        raise ValueError(f"tuning: unknown impl {impl!r}; choose one of {IMPLS}")
    merged = layered_table(table)
    kind = device_kind() if kind is None else kind
    for dev in (kind, "default"):
        per_d = merged.get(dev, {}).get(impl, {})
        for key in (f"d{head_dim}", "default"):
            if key in per_d:
                return BlockSizes(**per_d[key])
    return BlockSizes()
