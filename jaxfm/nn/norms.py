"""Normalisation layers shared by every model.

RMSNorm (Zhang & Sennrich 2019) and LayerNorm with their scale tagged with the logical axis
``embed`` so the sharding rules place them like the activations they normalise. Statistics
are always computed in float32, whatever the compute dtype, because bf16 variance of wide
activations loses most of its mantissa.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.nn.params import param

NormKind = Literal["rmsnorm", "layernorm"]


def _channels(v: jax.Array, ndim: int) -> jax.Array:
    """A (C,) vector shaped (1, ..., 1, C) to broadcast explicitly against rank ``ndim``."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


class RMSNorm(nnx.Module):
    """y = x / sqrt(mean(x^2) + eps) * scale, over the last axis."""

    def __init__(self, dim: int, *, eps: float = 1e-6, rngs: nnx.Rngs | None = None):
        del rngs
        self.eps = eps
        self.scale = param(jnp.ones((dim,), jnp.float32), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * _channels(self.scale[...], x.ndim)).astype(x.dtype)


class LayerNorm(nnx.Module):
    """y = (x - mean) / sqrt(var + eps) * scale + bias, over the last axis."""

    def __init__(self, dim: int, *, eps: float = 1e-6, rngs: nnx.Rngs | None = None):
        del rngs
        self.eps = eps
        self.scale = param(jnp.ones((dim,), jnp.float32), ("embed",))
        self.bias = param(jnp.zeros((dim,), jnp.float32), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * _channels(self.scale[...], x.ndim) + _channels(self.bias[...], x.ndim)).astype(
            x.dtype
        )


def make_norm(kind: NormKind, dim: int) -> nnx.Module:
    """Builds the norm named ``kind`` ("rmsnorm" or "layernorm") over ``dim`` features."""
    if kind == "rmsnorm":
        return RMSNorm(dim)
    if kind == "layernorm":
        return LayerNorm(dim)
    raise ValueError(f"unknown norm {kind!r}; choose 'rmsnorm' or 'layernorm'")
