"""Logical-axis rule tables: one per strategy, mapping parameter axis names to mesh axes.

Layers name their parameter axes (``embed``, ``mlp``, ``heads``, ``vocab``, ``expert``, ...)
through ``nnx.with_partitioning``; a strategy is a table from those names to mesh axes, as in
MaxText. Changing strategy changes one table, never a layer.

* ``dp``: parameters replicated; the batch split over every data-like axis.
* ``fsdp``: ZeRO-3 style; the ``embed`` axis (present in every matrix) is split over ``fsdp``,
  so each device holds 1/fsdp of each matrix and XLA all-gathers it just in time.
* ``fsdp_ep``: fsdp plus experts split over the ``expert`` axis.

A dimension whose size does not divide over its mesh axes is replicated rather than failing,
and a mesh axis is used at most once per array. Under fsdp, an array of at least 1024
elements that the names could not split over ``fsdp`` (no names, or an indivisible ``embed``)
gets the big_vision-style fallback: its largest divisible free dimension is split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MeshAxes = str | tuple[str, ...] | None

_COMMON: dict[str, MeshAxes] = {
    "batch": ("data", "fsdp", "expert"),
    "length": None,
    "mlp": "tensor",
    "heads": "tensor",
    "kv": None,
    "vocab": "tensor",
    "expert": None,
}

RULES: dict[str, dict[str, MeshAxes]] = {
    "dp": {**_COMMON, "embed": None},
    "fsdp": {**_COMMON, "embed": "fsdp"},
    "fsdp_ep": {**_COMMON, "embed": "fsdp", "expert": "expert"},
}

_FALLBACK_MIN_SIZE = 1024  # unnamed parameters smaller than this stay replicated


def logical_to_spec(
    names: tuple[str | None, ...] | None,
    shape: tuple[int, ...],
    mesh: Mesh,
    rules: Mapping[str, MeshAxes],
    *,
    fsdp_fallback: bool,
) -> PartitionSpec:
    """PartitionSpec for an array of ``shape`` whose axes carry logical ``names``."""
    if names is None:
        if not fsdp_fallback or math.prod(shape) < _FALLBACK_MIN_SIZE:
            return PartitionSpec()
        n = mesh.shape["fsdp"]
        dims = sorted(range(len(shape)), key=lambda d: -shape[d])
        for d in dims:
            if shape[d] % n == 0 and n > 1:
                return PartitionSpec(*[("fsdp" if i == d else None) for i in range(len(shape))])
        return PartitionSpec()
    if len(names) != len(shape):
        raise ValueError(f"logical names {names} do not match shape {shape}")
    used: set[str] = set()
    spec: list = []
    for name, size in zip(names, shape):
        if name is not None and name not in rules:
            raise ValueError(f"unknown logical axis {name!r}; rule table has {sorted(rules)}")
        axes = rules.get(name) if name is not None else None
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if axes and size % math.prod(mesh.shape[a] for a in axes) == 0:
            used.update(axes)
            spec.append(axes[0] if len(axes) == 1 else axes)
        else:
            spec.append(None)
    if fsdp_fallback and "fsdp" not in used and math.prod(shape) >= _FALLBACK_MIN_SIZE:
        # FSDP should split every big array: when the named axes could not take the fsdp
        # axis (e.g. an embed dim of 3), split the largest free divisible dimension instead.
        n = mesh.shape["fsdp"]
        for d in sorted(range(len(shape)), key=lambda d: -shape[d]):
            if spec[d] is None and n > 1 and shape[d] % n == 0:
                spec[d] = "fsdp"
                break
    return PartitionSpec(*spec)


def _names(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    meta = variable.get_metadata()
    names = meta.get("out_sharding") or meta.get("sharding_names") or meta.get("sharding")
    return tuple(names) if names else None


def state_shardings(state: nnx.State, mesh: Mesh, strategy: str) -> dict:
    """A pure dict of NamedShardings matching ``nnx.to_pure_dict(state)``.

    Args:
      state: an (abstract or concrete) ``nnx.State`` of Variables with logical-name metadata.
      mesh: the device mesh.
      strategy: a key of ``RULES``.
    """
    if strategy not in RULES:
        raise ValueError(f"unknown sharding strategy {strategy!r}; choose one of {sorted(RULES)}")
    rules = RULES[strategy]

    def one(v: nnx.Variable) -> NamedSharding:
        spec = logical_to_spec(
            _names(v), tuple(v.get_value().shape), mesh, rules, fsdp_fallback=strategy != "dp"
        )
        return NamedSharding(mesh, spec)

    shardings = jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.to_pure_dict(shardings)
