"""Auxiliary losses and metrics recorded inside a forward pass.

Layers such as a mixture-of-experts router need to add a term to the loss (load balancing,
router z-loss) and report statistics (expert load, dropped tokens) without changing their
call shape. They *sow* values into two NNX variable types; the training engine pops them
after the forward pass: every :class:`AuxLoss` is added to the task loss, every
:class:`AuxMetric` is logged (averaged when sown several times).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class AuxLoss(nnx.Variable):
    """A scalar already multiplied by its weight, added to the training loss."""


class AuxMetric(nnx.Variable):
    """A scalar (or small array) that is logged, not optimised."""


def record_aux_loss(module: nnx.Module, name: str, value: jax.Array) -> None:
    """Adds ``value`` (a weighted scalar) to the loss of the current forward pass."""
    module.sow(AuxLoss, name, value)


def record_metric(module: nnx.Module, name: str, value: jax.Array) -> None:
    """Logs ``value`` under ``name`` for the current forward pass."""
    module.sow(AuxMetric, name, value)


def _flatten(state) -> dict[str, list[jax.Array]]:
    out: dict[str, list[jax.Array]] = {}
    for path, leaf in nnx.to_flat_state(state):
        name = "/".join(str(p) for p in path)
        value = leaf.get_value()  # sow stores a tuple, one entry per call
        out.setdefault(name, []).extend(value if isinstance(value, tuple) else [value])
    return out


def pop_aux(model: nnx.Module) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Removes the sown values from ``model``; returns (total aux loss, metrics by name).

    Metrics are keyed by the module path that sowed them, e.g. ``trunk/blocks/3/mlp/load``;
    a value sown several times in one pass (a layer applied to several axes) is averaged.
    """
    losses = nnx.pop(model, AuxLoss)
    metrics = nnx.pop(model, AuxMetric)
    total = jnp.zeros((), jnp.float32)
    out: dict[str, jax.Array] = {}
    for name, values in _flatten(losses).items():
        total = total + sum(jnp.asarray(v, jnp.float32) for v in values)
        out[f"aux/{name}"] = sum(values) / len(values)
    for name, values in _flatten(metrics).items():
        out[f"aux/{name}"] = sum(values) / len(values)
    return total, out
