"""Error metrics and losses for PDE surrogates, per sample and per field, and their summaries.

Definitions (pred, target of shape (B, *spatial, C); means over the N spatial points, per
sample b and field c; ``valid`` (B, C) masks padding channels; eps = 1e-7 everywhere, in
training, evaluation and rollouts, so an all-zero target field gives a finite number):

* RMSE   = sqrt(mean((pred - y)^2)).
* NRMSE  = sqrt(mean((pred - y)^2) / (mean(y^2) + eps)) -- MPP / PDEBench (McCabe et al.
  2023, ``train_basic.py``; Takamoto et al. 2022). Flatters fields with a large offset
  (pressure ~60 +- 0.3): a poor prediction of the fluctuation still scores ~0.005.
* VRMSE  = sqrt(mean((pred - y)^2) / (var(y) + eps)) with the *unbiased* spatial variance
  var(y) = sum((y - mean(y))^2) / (N - 1) -- The Well (Ohana et al. 2024,
  ``the_well/benchmark/metrics/spatial.py``: ``NRMSE`` with ``norm_mode="std"``, i.e.
  ``torch.std(y, dim=spatial) ** 2``, whose default correction is N - 1, plus eps 1e-7).
  Predicting the spatial mean scores sqrt((N - 1) / N), just under 1.
* NMSE loss (MPP's training loss) = mean_bc [mean((pred - y)^2) / (mean(y^2) + eps)].

Summaries (:func:`system_summary`, host NumPy): per system, the mean over its windows and
valid fields; per field within a system, the mean over its windows; the headline, the mean
over systems of the per-system means, so each system weighs the same however many windows
it has.

All per-sample functions are plain ``jnp`` and jit-safe; reductions are in float32.
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


def nrmse(pred, target, *, eps: float = EPS) -> jax.Array:
    """(B, C) MPP/PDEBench NRMSE, sqrt(MSE / (mean(y^2) + eps))."""
    y = target.astype(jnp.float32)
    return jnp.sqrt(field_mse(pred, target) / (jnp.mean(y * y, axis=_spatial_axes(y)) + eps))


def vrmse(pred, target, *, eps: float = EPS) -> jax.Array:
    """(B, C) The Well's VRMSE, sqrt(MSE / (var(y) + eps)), var with N - 1 (as torch.std)."""
    y = target.astype(jnp.float32)
    var = jnp.var(y, axis=_spatial_axes(y), ddof=1)
    return jnp.sqrt(field_mse(pred, target) / (var + eps))


METRICS = {"rmse": rmse, "nrmse": nrmse, "vrmse": vrmse}
"""Name -> (pred, target) -> (B, C) metric."""


def masked_mean(values: Float[Array, "b c"], valid: Bool[Array, "b c"] | None = None):
    """Mean of a (B, C) array over the entries where ``valid`` (all when None)."""
    if valid is None:
        return jnp.mean(values)
    # where, not multiply: a padding channel of zeros has NRMSE 0/0 = NaN, and NaN * 0 = NaN
    total = jnp.sum(jnp.where(valid, values, 0.0))
    return total / jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)


LOSSES = ("nmse", "increment", "mse", "l1")


def field_loss(pred, target, *, kind: str = "nmse", last=None) -> jax.Array:
    """(B, C) training loss per sample and field (see :func:`surrogate_loss`); ``last`` (the
    last input frame, (B, *spatial, C)) is needed by ``increment``."""
    if kind == "nmse":
        y = target.astype(jnp.float32)
        return field_mse(pred, target) / (jnp.mean(y * y, axis=_spatial_axes(y)) + EPS)
    if kind == "increment":
        if last is None:
            raise ValueError("the increment loss needs the last input frame (last=...)")
        return field_mse(pred, target) / (field_mse(last, target) + EPS)
    if kind == "mse":
        return field_mse(pred, target)
    if kind == "l1":
        err = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
        return jnp.mean(err, axis=_spatial_axes(err))
    raise ValueError(f"unknown surrogate loss {kind!r}; choose one of {LOSSES}")


def surrogate_loss(pred, target, *, kind: str = "nmse", valid=None, last=None) -> jax.Array:
    """Scalar training loss averaged over samples and (valid) fields.

    ``nmse``: MPP's normalised MSE, MSE / (mean(y^2) + 1e-7) per sample and field, so every
    field and system weighs the same whatever its units. ``increment``: MSE relative to
    persistence's, MSE / (mean((y - last)^2) + 1e-7): 1 for "no change", so a field that barely
    moves (whose mean(y^2) hides its dynamics) weighs as much as a fast one. ``mse``: plain
    MSE. ``l1``: mean absolute error.
    """
    return masked_mean(field_loss(pred, target, kind=kind, last=last), valid)


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


def system_summary(
    values: dict[str, np.ndarray],
    system_names: Sequence[str],
    field_names: Sequence[str],
) -> dict[str, float]:
    """Per-system, per-field and over-systems means of per-window errors (host, float64).

    Args:
      values: rows of every scored window: ``system (N,)`` and ``field_ids (N, C)`` (-1 =
        padding) label them; every other floating entry is a metric, (N, C) per field or
        (N,) per window.
      system_names, field_names: id -> name (the system and field registries).

    Returns:
      For each metric ``m``: ``m/<system>`` (mean over the system's windows and valid
      fields), ``m/<system>/<field>`` (for (N, C) metrics) and ``m`` (the mean over systems of
      ``m/<system>``); plus ``windows`` (in all) and ``windows/<system>``.
    """
    systems = np.asarray(values["system"]).reshape(-1)
    ids = np.asarray(values["field_ids"])
    present = [int(s) for s in np.unique(systems)]
    name = lambda s: system_names[s] if 0 <= s < len(system_names) else str(s)  # noqa: E731
    out: dict[str, float] = {"windows": float(len(systems))}
    for s in present:
        out[f"windows/{name(s)}"] = float(np.sum(systems == s))
    for key, v in values.items():
        v = np.asarray(v)
        if key in ("system", "field_ids") or not np.issubdtype(v.dtype, np.floating):
            continue
        per_system = []
        for s in present:
            rows = systems == s
            if v.ndim == 2:
                sys_mean = _valid_mean(v[rows], ids[rows] >= 0)
                for field, m in group_mean(v[rows], ids[rows], field_names).items():
                    out[f"{key}/{name(s)}/{field}"] = m
            else:
                sys_mean = float(np.mean(np.asarray(v[rows], np.float64)))
            out[f"{key}/{name(s)}"] = sys_mean
            per_system.append(sys_mean)
        out[key] = float(np.mean(per_system))
    return out


def _valid_mean(values: np.ndarray, valid: np.ndarray) -> float:
    return float(np.asarray(values, np.float64)[valid].mean())
