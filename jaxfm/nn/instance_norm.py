"""Instance normalisations over the spatial axes of channels-last feature maps (MPP AViT).

Design note. MPP's AViT (McCabe et al., arXiv 2310.02994; code ``models/spatial_modules.py``,
``models/time_modules.py``) normalises token maps per sample, per frame and per channel over
the *spatial* axes, never over channels as a LayerNorm would:

* :class:`RMSInstanceNorm` -- divide by the spatial standard deviation (unbiased, ddof 1) plus
  eps = 1e-8, *without* centring, then scale by a learned weight. Used in the hMLP stem and
  de-stem and in the spatial blocks. MPP also stores a bias that it never applies; we do not
  create it (the converter drops it), which is why our parameter counts are smaller than
  MPP's published ones by exactly those unused biases (see ``jaxfm.models.surrogate``).
* :class:`InstanceNorm` -- ``torch.nn.InstanceNorm2d(affine=True)``: centre, divide by
  sqrt(biased variance + 1e-5), scale and shift. Used around MPP's time attention.

Shapes: x (N, *spatial, C) with ``spatial_axes`` naming the axes to reduce (default: every
axis between the first and the last). Statistics in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.nn.params import param


def _axes(x: jax.Array, spatial_axes: tuple[int, ...] | None) -> tuple[int, ...]:
    return tuple(range(1, x.ndim - 1)) if spatial_axes is None else spatial_axes


class RMSInstanceNorm(nnx.Module):
    """y = x / (std_spatial(x, ddof=1) + eps) * weight; no centring, no bias."""

    def __init__(self, dim: int, *, eps: float = 1e-8):
        """Args: dim: channels (last axis); eps: added to the standard deviation."""
        self.eps = eps
        self.weight = param(jnp.ones((dim,), jnp.float32), ("embed",))

    def __call__(self, x: jax.Array, *, spatial_axes: tuple[int, ...] | None = None):
        """Normalises ``x`` over ``spatial_axes`` (default: all but first and last)."""
        axes = _axes(x, spatial_axes)
        n = 1
        for a in axes:
            n *= x.shape[a]
        if n < 2:
            raise ValueError(f"RMSInstanceNorm needs >= 2 spatial points, got shape {x.shape}")
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=axes, keepdims=True)
        std = jnp.sqrt(jnp.sum(jnp.square(xf - mean), axis=axes, keepdims=True) / (n - 1))
        weight = self.weight[...].reshape((1,) * (x.ndim - 1) + (-1,))
        return (xf / (std + self.eps) * weight).astype(x.dtype)


class InstanceNorm(nnx.Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over spatial axes."""

    def __init__(self, dim: int, *, eps: float = 1e-5):
        """Args: dim: channels (last axis); eps: added to the biased variance."""
        self.eps = eps
        self.weight = param(jnp.ones((dim,), jnp.float32), ("embed",))
        self.bias = param(jnp.zeros((dim,), jnp.float32), ("embed",))

    def __call__(self, x: jax.Array, *, spatial_axes: tuple[int, ...] | None = None):
        """Normalises ``x`` over ``spatial_axes`` (default: all but first and last)."""
        axes = _axes(x, spatial_axes)
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=axes, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
        shape = (1,) * (x.ndim - 1) + (-1,)
        return (y * self.weight[...].reshape(shape) + self.bias[...].reshape(shape)).astype(x.dtype)
