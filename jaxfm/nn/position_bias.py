"""Bucketed relative position bias (T5) whose distances wrap on periodic boundaries.

Design note. MPP's AViT (McCabe et al., arXiv 2310.02994, appendix) attends along one axis at
a time (time, x, y) and adds to the logits a learned scalar per head and *relative position
bucket*, as in T5 (Raffel et al., JMLR 2020): 32 buckets, bidirectional, so 16 per
direction; distances below 8 have their own bucket, larger ones share logarithmically wider
buckets up to ``max_distance`` (32 in MPP, whose bucketing function is called without its
module's 128). On a periodic axis of length L the two edges touch, so the relative position
k - q is wrapped into [-L/2, L/2] first: the token at the far edge is a neighbour.

By default the wrap is *circular*: positions land in [-L/2, L/2), so the bias matrix is
circulant (shifting query and key together along the ring changes nothing). MPP's own wrap
(``relative_position % thresh`` with thresh = L//2) keeps both +L/2 and -L/2 (two buckets for
the same ring distance) and is off by one for odd L; ``wrap="mpp"`` reproduces it exactly,
for imported MPP checkpoints.

Shapes: ``__call__(length, periodic)`` -> (N, heads, length, length), added to attention logits
of layout (B, heads, Lq, Lk). ``periodic`` may be a Python bool, a traced scalar (N = 1) or one
flag per sample (N,), so boundary conditions are data: no recompiling, and one batch may mix
periodic and bounded systems.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfm.nn.params import partitioned

WRAPS = ("circular", "mpp")


def wrap_relative_positions(rel: np.ndarray | jax.Array, length: int, wrap: str = "circular"):
    """Maps relative positions in (-L, L) onto the ring.

    ``circular``: into [-(L//2), L - L//2), the shortest signed distance (ties to negative).
    ``mpp``: MPP's rule, values beyond +-(L//2) taken modulo -+(L//2).
    """
    rel = jnp.asarray(rel)
    half = length // 2
    if wrap == "circular":
        return jnp.mod(rel + half, length) - half
    if wrap == "mpp":
        rel = jnp.where(rel < -half, jnp.mod(rel, half), rel)
        return jnp.where(rel > half, jnp.mod(rel, -half), rel)
    raise ValueError(f"unknown periodic wrap {wrap!r}; choose one of {WRAPS}")


def t5_bucket(rel: jax.Array, *, num_buckets: int = 32, max_distance: int = 32) -> jax.Array:
    """T5 bidirectional bucket of relative position ``rel`` = key - query (int array)."""
    n = -rel
    half = num_buckets // 2
    ret = jnp.where(n < 0, half, 0)
    n = jnp.abs(n)
    max_exact = half // 2
    # log of n >= max_exact only matters where it is used; clamp to avoid log(0)
    nf = jnp.maximum(n, 1).astype(jnp.float32)
    large = max_exact + (
        jnp.log(nf / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    ).astype(jnp.int32)
    large = jnp.minimum(large, half - 1)
    return ret + jnp.where(n < max_exact, n, large)


class RelativePositionBias(nnx.Module):
    """Learned per-head bias indexed by the (optionally wrapped) relative-position bucket."""

    def __init__(
        self,
        heads: int,
        *,
        num_buckets: int = 32,
        max_distance: int = 32,
        wrap: str = "circular",
        rngs: nnx.Rngs,
    ):
        """Args:
        heads: attention heads (one bias per head and bucket).
        num_buckets: total buckets (both directions).
        max_distance: distances at or beyond this share the last bucket.
        wrap: periodic wrap rule, ``circular`` or ``mpp`` (see module docstring).
        rngs: parameter initialisation (N(0, 1), as ``torch.nn.Embedding``).
        """
        if wrap not in WRAPS:
            raise ValueError(f"unknown periodic wrap {wrap!r}; choose one of {WRAPS}")
        self.num_buckets, self.max_distance, self.wrap = num_buckets, max_distance, wrap
        init = partitioned(nnx.initializers.normal(1.0), (None, "heads"))
        self.table = nnx.Param(init(rngs.params(), (num_buckets, heads), jnp.float32))

    def buckets(self, length: int, periodic: bool | jax.Array = False) -> jax.Array:
        """(*P, length, length) int32 bucket of key j for query i; P = periodic's shape."""
        pos = np.arange(length)
        rel = jnp.asarray(pos[None, :] - pos[:, None])
        periodic = jnp.asarray(periodic, bool)[..., None, None]
        rel = jnp.where(periodic, wrap_relative_positions(rel, length, self.wrap), rel)
        return t5_bucket(rel, num_buckets=self.num_buckets, max_distance=self.max_distance)

    def __call__(self, length: int, periodic: bool | jax.Array = False) -> jax.Array:
        """(N, heads, length, length) float32 additive logits bias.

        ``periodic`` is a scalar (N = 1) or one flag per sample, shape (N,).
        """
        periodic = jnp.asarray(periodic, bool)
        if periodic.ndim > 1:
            raise ValueError(f"periodic must be a scalar or (batch,), got {periodic.shape}")
        vals = self.table[...][self.buckets(length, periodic.reshape(-1))]  # (N, L, L, heads)
        return jnp.transpose(vals, (0, 3, 1, 2))
