"""Shared input/output handling of the single-system baselines (FNO, U-Net).

The baselines see the same windows and the same normalisation as the AViT, so a comparison
isolates the architecture (and pretraining), not the preprocessing:

1. RevIN per sample and field (``jaxfm.nn.revin``),
2. the T input frames folded into channels, (B, T, H, W, C) -> (B, H, W, T*C),
3. the core network -> (B, H, W, C),
4. ``delta``: add the last input frame (the output layer starts at zero, so the untrained
   model is the persistence baseline), then de-normalise.

Baselines have no field vocabulary: they are trained per target system with a fixed channel
count; ``field_ids`` are only checked for shape. Boundary conditions are ignored (the FNO is
periodic by construction, the U-Net zero-pads).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.nn.revin import revin_denormalize, revin_normalize


def folded_forward(
    core: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    n_steps_input: int,
    n_channels: int,
    delta: bool,
) -> jax.Array:
    """Applies ``core`` ((B, H, W, T*C) -> (B, H, W, C)) with RevIN, time folding and delta."""
    if x.ndim != 5 or x.shape[1] != n_steps_input or x.shape[-1] != n_channels:
        raise ValueError(
            f"baseline built for (B, {n_steps_input}, H, W, {n_channels}) inputs, got {x.shape}"
        )
    b, t, h, w, c = x.shape
    xn, stats = revin_normalize(x)
    folded = jnp.moveaxis(xn, 1, 3).reshape(b, h, w, t * c)
    out = core(folded)
    if delta:
        out = xn[:, -1] + out
    return revin_denormalize(out, stats)


class FoldedBaseline(nnx.Module):
    """The surrogate call shape for a baseline whose ``_core`` maps (B, H, W, T*C) -> (B, H, W, C).

    Subclasses set ``self.cfg`` (with ``n_steps_input``, ``n_channels``, ``delta``) and define
    ``_core``; the call is :func:`folded_forward` with the AViT's signature.
    """

    def __call__(self, x, field_ids=None, *, periodic=None, deterministic=True, rngs=None):
        """(B, T, H, W, C) -> (B, H, W, C) next frame."""
        del field_ids, periodic, deterministic, rngs
        return folded_forward(
            self._core,
            x,
            n_steps_input=self.cfg.n_steps_input,
            n_channels=self.cfg.n_channels,
            delta=self.cfg.delta,
        )
