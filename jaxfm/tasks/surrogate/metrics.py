"""Error metrics and losses for PDE surrogates, per sample and per field.

Definitions (pred, target of shape (B, *spatial, C); means over the spatial axes, per sample
b and field c; ``valid`` (B, C) masks padding channels):

* RMSE   = sqrt(mean((pred - y)^2)).
* NRMSE  = sqrt(mean((pred - y)^2) / mean(y^2)) -- MPP / PDEBench (McCabe et al. 2023,
  ``train_basic.py``; Takamoto et al. 2022). Flatters fields with a large offset (pressure
  ~60 +- 0.3): a poor prediction of the fluctuation still scores ~0.005.
* VRMSE  = sqrt(mean((pred - y)^2) / (var(y) + eps)) -- The Well (Ohana et al. 2024,
  ``the_well/benchmark/metrics/spatial.py``): predicting the spatial mean scores 1.
* NMSE loss (MPP's training loss) = mean_bc [mean((pred - y)^2) / (mean(y^2) + 1e-7)].

All functions are plain ``jnp`` and jit-safe; reductions are in float32.
The per-field/per-system summaries (:func:`group_mean`) run on the host in NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

EPS = 1e-7
"""Added to denominators (MPP's NMSE and The Well's VRMSE both use 1e-7)."""


def _spatial_axes(x: jax.Array) -> tuple[int, ...]:
    return tuple(range(1, x.ndim - 1))


def field_mse(pred: Float[Array, "b *s c"], target: Float[Array, "b *s c"]) -> jax.Array:
    """(B, C) mean squared error over the spatial axes."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    err = pred.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(err), axis=_spatial_axes(err))


def rmse(pred, target) -> jax.Array:
    """(B, C) root mean squared error."""
    return jnp.sqrt(field_mse(pred, target))


def nrmse(pred, target, *, eps: float = 0.0) -> jax.Array:
    """(B, C) MPP/PDEBench NRMSE, sqrt(MSE / mean(y^2)) (``eps`` added to the denominator)."""
    y = target.astype(jnp.float32)
    return jnp.sqrt(field_mse(pred, target) / (jnp.mean(y * y, axis=_spatial_axes(y)) + eps))


def vrmse(pred, target, *, eps: float = EPS) -> jax.Array:
    """(B, C) The Well's VRMSE, sqrt(MSE / (var(y) + eps))."""
    y = target.astype(jnp.float32)
    return jnp.sqrt(field_mse(pred, target) / (jnp.var(y, axis=_spatial_axes(y)) + eps))


METRICS = {"rmse": rmse, "nrmse": nrmse, "vrmse": vrmse}
"""Name -> (pred, target) -> (B, C) metric."""


def masked_mean(values: Float[Array, "b c"], valid: Bool[Array, "b c"] | None = None):
    """Mean of a (B, C) array over the entries where ``valid`` (all when None)."""
    if valid is None:
        return jnp.mean(values)
    # where, not multiply: a padding channel of zeros has NRMSE 0/0 = NaN, and NaN * 0 = NaN
    total = jnp.sum(jnp.where(valid, values, 0.0))
    return total / jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)


LOSSES = ("nmse", "mse", "l1")


def surrogate_loss(pred, target, *, kind: str = "nmse", valid=None) -> jax.Array:
    """Scalar training loss averaged over samples and (valid) fields.

    ``nmse``: MPP's normalised MSE, MSE / (mean(y^2) + 1e-7) per sample and field, so every
    field and system weighs the same whatever its units. ``mse``: plain MSE. ``l1``: mean
    absolute error.
    """
    if kind == "nmse":
        y = target.astype(jnp.float32)
        per = field_mse(pred, target) / (jnp.mean(y * y, axis=_spatial_axes(y)) + EPS)
    elif kind == "mse":
        per = field_mse(pred, target)
    elif kind == "l1":
        err = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
        per = jnp.mean(err, axis=_spatial_axes(err))
    else:
        raise ValueError(f"unknown surrogate loss {kind!r}; choose one of {LOSSES}")
    return masked_mean(per, valid)


def group_mean(
    values: np.ndarray,
    groups: np.ndarray,
    names: Sequence[str] | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean of ``values`` per group id (e.g. per field id or per system id), on the host.

    Args:
      values: any shape; ``groups`` broadcasts to it (e.g. (B, C) values, (B, C) field ids,
        or (B, C) values with (B, 1) system ids).
      groups: integer group ids; negative ids are skipped (padding).
      names: id -> display name (defaults to the id as text).
      valid: optional mask of the entries to use.
    """
    values = np.asarray(values, np.float64)
    groups = np.broadcast_to(np.asarray(groups), values.shape)
    keep = groups >= 0
    if valid is not None:
        keep &= np.broadcast_to(np.asarray(valid, bool), values.shape)
    out = {}
    for g in np.unique(groups[keep]):
        name = names[g] if names is not None and g < len(names) else str(int(g))
        out[name] = float(values[keep & (groups == g)].mean())
    return out
