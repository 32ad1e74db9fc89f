"""Reversible instance normalisation (RevIN) for multi-physics surrogates.

Design note. A multi-physics model sees fields whose magnitudes differ by orders of magnitude
(pressure ~60 next to velocities ~0.1 in compressible NS at M=0.1). RevIN (Kim et al., ICLR
2022; used by MPP, McCabe et al., arXiv 2310.02994, section 3) removes that spread *per
sample and per field*: the input window is shifted and scaled by its own mean and standard
deviation over time and space, the network works in those units, and its prediction is
mapped back with the *input* statistics. No parameters, no gradient through the statistics
(MPP computes them under ``torch.no_grad``).

Shapes: x (B, T, *spatial, C) with fields last; statistics (B, 1, *1, C).
Std is the unbiased one (ddof 1) plus ``eps`` = 1e-7, as in MPP's ``AViT.forward``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

MPP_EPS = 1e-7
"""Added to the standard deviation (not the variance), as MPP does."""


class RevINStats(NamedTuple):
    """Per-sample, per-field statistics of one input window."""

    mean: jax.Array
    """(B, 1, *1, C) mean over time and space."""
    std: jax.Array
    """(B, 1, *1, C) unbiased standard deviation over time and space, plus eps."""


def revin_stats(x: Float[Array, "b t *s c"], *, eps: float = MPP_EPS) -> RevINStats:
    """Mean and unbiased std of ``x`` over every axis but batch (0) and field (-1).

    Computed in float32 and without gradient (the statistics are constants of the sample).
    """
    if x.ndim < 3:
        raise ValueError(f"RevIN expects (B, T, *spatial, C), got shape {x.shape}")
    xf = jax.lax.stop_gradient(x.astype(jnp.float32))
    axes = tuple(range(1, x.ndim - 1))
    n = 1
    for a in axes:
        n *= x.shape[a]
    if n < 2:
        raise ValueError(f"RevIN needs at least 2 points per field, got shape {x.shape}")
    mean = jnp.mean(xf, axis=axes, keepdims=True)
    var = jnp.sum(jnp.square(xf - mean), axis=axes, keepdims=True) / (n - 1)
    return RevINStats(mean=mean, std=jnp.sqrt(var) + eps)


def revin_normalize(
    x: Float[Array, "b t *s c"], *, eps: float = MPP_EPS
) -> tuple[jax.Array, RevINStats]:
    """Returns ((x - mean) / std, stats) with the statistics of ``x`` itself."""
    stats = revin_stats(x, eps=eps)
    return ((x.astype(jnp.float32) - stats.mean) / stats.std).astype(x.dtype), stats


def revin_denormalize(y: Float[Array, "b *rest c"], stats: RevINStats) -> jax.Array:
    """Maps ``y`` (normalised units; any number of time steps) back with ``stats``.

    ``y`` has the layout of the input, (B, T', *spatial, C), or lacks the time axis,
    (B, *spatial, C); the statistics broadcast over either.
    """
    mean, std = stats.mean, stats.std
    if y.ndim == mean.ndim - 1:  # no time axis
        mean, std = mean[:, 0], std[:, 0]
    if y.ndim != mean.ndim:
        raise ValueError(f"cannot de-normalise shape {y.shape} with statistics {mean.shape}")
    return (y.astype(jnp.float32) * std + mean).astype(y.dtype)
