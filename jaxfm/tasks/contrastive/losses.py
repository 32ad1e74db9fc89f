"""Contrastive losses for paired embeddings: symmetric InfoNCE (CLIP) and sigmoid (SigLIP).

Design note. With embeddings a, b (B, E) L2-normalised (z / max(|z|, eps)) and a scale s:

* InfoNCE (Radford et al. 2021; AstroCLIP, Parker et al. 2024):
  l_ij = s a_i.b_j,  L = 1/2 [mean_i(lse_j l_ij - l_ii) + mean_j(lse_i l_ij - l_jj)].
  s = exp(t) with t learned (init log(1/0.07)) or fixed (AstroCLIP v2: s = 15.5); the scale
  is capped at ``max_scale`` = 100 as in open_clip, since an unbounded s diverges.
* Sigmoid (Zhai et al. 2023, SigLIP): L = -(1/B) sum_ij log sigmoid(y_ij (t a_i.b_j + c)),
  y = +1 on the diagonal and -1 elsewhere; t = exp(t') (init 10) and bias c (init -10).

Data parallelism. The functions without ``_local`` act on the *global* batch: under ``jit``
with a batch-sharded input, XLA gathers what the similarity matrix needs, so every pair in the
global batch is a negative and the gradients are those of the global loss. The ``*_local``
variants are the memory-lean form for ``shard_map`` (open_clip's "local loss", big_vision's
``softmax_loss``): each device scores its n rows against all N gathered columns, O(nN) memory
instead of O(N^2); ``all_gather`` is differentiable in JAX, so gradients reach the other
devices' embeddings. Both equal the single-device loss (tests/tasks/contrastive/test_losses.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

#: CLIP's initial temperature 0.07, stored as log(scale).
INIT_LOG_SCALE = math.log(1.0 / 0.07)
#: open_clip's cap on the logit scale.
MAX_SCALE = 100.0


def l2_normalize(x: Float[Array, "b e"], eps: float = 1e-6) -> Float[Array, "b e"]:
    """x / max(|x|, eps) over the last axis, in float32 (finite gradient at x = 0)."""
    x = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps * eps)
    return x / jnp.maximum(norm, eps)


def clamp_scale(log_scale: jax.Array, max_scale: float = MAX_SCALE) -> jax.Array:
    """exp(log_scale) capped at ``max_scale`` (gradient zero above the cap)."""
    return jnp.exp(jnp.minimum(log_scale.astype(jnp.float32), math.log(max_scale)))


def check_pairs(a: jax.Array, b: jax.Array, caller: str) -> None:
    """Paired embeddings must be (B, E) with the same shape and B >= 1.

    Every loss here averages over the batch: an empty batch would give NaN (a mean over
    nothing) that only shows up steps later, and mismatched rows have no positive pairs.

    Raises:
      ValueError: naming the caller and the shapes.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{caller}: embeddings must be two (B, E) arrays of the same shape, got a "
            f"{tuple(a.shape)} and b {tuple(b.shape)}"
        )
    if a.shape[0] == 0:
        raise ValueError(
            f"{caller}: batch size must be >= 1, got 0 (a {tuple(a.shape)}, b {tuple(b.shape)})"
        )


def infonce_loss(
    a: Float[Array, "b e"], b: Float[Array, "b e"], scale: float | jax.Array
) -> jax.Array:
    """Symmetric InfoNCE of the global batch; rows i of ``a`` and ``b`` are the positives.

    Args:
      a, b: unnormalised embeddings of the two modalities (normalised here).
      scale: multiplier of the cosine similarities (1 / temperature).
    Returns:
      the scalar loss (float32).
    Raises:
      ValueError: ``a`` and ``b`` not the same (B, E) shape, or B == 0.
    """
    check_pairs(a, b, "infonce_loss")
    logits = scale * (l2_normalize(a) @ l2_normalize(b).T)
    diag = jnp.diagonal(logits)
    a2b = jax.nn.logsumexp(logits, axis=1) - diag
    b2a = jax.nn.logsumexp(logits, axis=0) - diag
    return 0.5 * (jnp.mean(a2b) + jnp.mean(b2a))


def siglip_loss(
    a: Float[Array, "b e"],
    b: Float[Array, "b e"],
    scale: float | jax.Array,
    bias: float | jax.Array,
) -> jax.Array:
    """Pairwise sigmoid loss of the global batch, summed over pairs and divided by B.

    Raises ValueError for ``a`` and ``b`` not the same (B, E) shape, or B == 0."""
    check_pairs(a, b, "siglip_loss")
    logits = scale * (l2_normalize(a) @ l2_normalize(b).T) + bias
    n = logits.shape[0]
    labels = 2.0 * jnp.eye(n, dtype=logits.dtype) - 1.0
    return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / n


def infonce_loss_local(
    a: jax.Array, b: jax.Array, scale: jax.Array, axis_name: str | tuple[str, ...]
) -> jax.Array:
    """Per-device InfoNCE inside ``shard_map`` over ``axis_name``; returns the global loss.

    ``a``, ``b`` are this device's (n, E) rows of a batch sharded contiguously along
    ``axis_name``; the result (replicated) equals :func:`infonce_loss` of the full batch.
    Raises ValueError for rows of different shapes or n == 0.
    """
    check_pairs(a, b, "infonce_loss_local")
    a, b = l2_normalize(a), l2_normalize(b)
    # one collective for both modalities (fewer concurrent collectives per step)
    ab_all = jax.lax.all_gather(jnp.concatenate([a, b], axis=1), axis_name, tiled=True)
    a_all, b_all = ab_all[:, : a.shape[1]], ab_all[:, a.shape[1] :]  # (N, E) each
    n = a.shape[0]
    pos = scale * jnp.sum(a * b, axis=-1)  # (n,)
    a2b = jax.nn.logsumexp(scale * (a @ b_all.T), axis=1) - pos  # local images vs all spectra
    b2a = jax.nn.logsumexp(scale * (b @ a_all.T), axis=1) - pos  # local spectra vs all images
    total = jax.lax.psum(jnp.sum(a2b) + jnp.sum(b2a), axis_name)
    big_n = jax.lax.psum(n, axis_name)
    return 0.5 * total / big_n


def siglip_loss_local(
    a: jax.Array, b: jax.Array, scale: jax.Array, bias: jax.Array, axis_name: str | tuple[str, ...]
) -> jax.Array:
    """Per-device sigmoid loss inside ``shard_map``; equals :func:`siglip_loss` globally.

    Raises ValueError for rows of different shapes or n == 0."""
    check_pairs(a, b, "siglip_loss_local")
    a, b = l2_normalize(a), l2_normalize(b)
    b_all = jax.lax.all_gather(b, axis_name, tiled=True)  # (N, E)
    n, big_n = a.shape[0], b_all.shape[0]
    logits = scale * (a @ b_all.T) + bias  # (n, N)
    cols = jnp.arange(big_n)[None, :]
    rows = jax.lax.axis_index(axis_name) * n + jnp.arange(n)[:, None]
    labels = jnp.where(cols == rows, 1.0, -1.0)
    return -jax.lax.psum(jnp.sum(jax.nn.log_sigmoid(labels * logits)), axis_name) / big_n


def in_batch_accuracy(a: jax.Array, b: jax.Array) -> jax.Array:
    """Fraction of rows of ``a`` whose most similar row of ``b`` is their partner (a->b)."""
    check_pairs(a, b, "in_batch_accuracy")
    sim = l2_normalize(a) @ l2_normalize(b).T
    return jnp.mean((jnp.argmax(sim, axis=1) == jnp.arange(a.shape[0])).astype(jnp.float32))
