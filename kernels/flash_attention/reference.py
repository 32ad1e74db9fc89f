"""Plain-``jnp`` attention: the ground truth for the fused kernels and their CPU fallback.

Conventions shared by every path in ``kernels/flash_attention`` (reference, Pallas, Triton):

* Layout ``q: (B, Lq, H, D)``, ``k, v: (B, Lk, Hkv, D)`` with ``H % Hkv == 0``; query head ``h``
  reads key/value head ``h // (H // Hkv)`` (grouped-query attention, GQA).
* ``scale`` defaults to ``1 / sqrt(D)``.
* ``causal``: query ``i`` sees keys ``j <= i`` (top-left alignment, as
  ``jax.nn.dot_product_attention(is_causal=True)``; with ``Lq != Lk`` this is *not* the
  bottom-right alignment used for KV-cache decoding).
* Masks are given as segment ids: query ``i`` sees key ``j`` only when
  ``q_segment_ids[b, i] == kv_segment_ids[b, j]``. A key-padding mask becomes segment ids by
  :func:`segments_from_padding` (padded keys get id -1, which no query carries).
* A query row that sees no key returns 0 (not NaN, not the mean of V), and its log-sum-exp is
  ``+inf`` so that the backward's ``exp(s - lse)`` is exactly 0 there.
* Accumulation is float32 whatever the input dtype (bf16/fp16 inputs are upcast once); the
  output is cast back to ``q.dtype``. The log-sum-exp is returned in natural log, float32.

The reference materialises the (B, H, Lq, Lk) logits: memory O(Lq*Lk), fine for tests and for
the CPU fallback, not for long sequences on GPU (that is what the kernels are for).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = ["attention_reference", "segments_from_padding", "check_shapes"]


def check_shapes(q: jax.Array, k: jax.Array, v: jax.Array) -> tuple[int, int]:
    """Validate the (B, L, H, D) layout shared by all paths; return (heads, kv_heads).

    Raises:
      ValueError: naming the offending argument and shape.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects 4-D (B, L, H, D) arrays; got q{q.shape} k{k.shape} v{v.shape}"
        )
    if k.shape != v.shape:
        raise ValueError(f"attention: k{k.shape} and v{v.shape} must have the same shape")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention: batch and head_dim of q{q.shape} and k{k.shape} must agree")
    heads, kv_heads = q.shape[2], k.shape[2]
    if heads % kv_heads:
        raise ValueError(
            f"attention: q heads ({heads}) must be a multiple of kv heads ({kv_heads}) for GQA"
        )
    return heads, kv_heads


def segments_from_padding(
    key_padding_mask: Bool[Array, "b lk"] | None,
    q_segment_ids: Int[Array, "b lq"] | None,
    kv_segment_ids: Int[Array, "b lk"] | None,
    q_len: int,
) -> tuple[jax.Array | None, jax.Array | None]:
    """Fold a key-padding mask into segment ids (padded keys get id -1).

    Args:
      key_padding_mask: True where a key is real; None for no padding.
      q_segment_ids, kv_segment_ids: non-negative int ids or None (both or neither).
      q_len: query length, used when only a padding mask is given.

    Returns:
      ``(q_segment_ids, kv_segment_ids)`` as int32, or ``(None, None)`` when nothing masks.
    """
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("attention: give both q_segment_ids and kv_segment_ids, or neither")
    if key_padding_mask is None:
        if q_segment_ids is None:
            return None, None
        return q_segment_ids.astype(jnp.int32), kv_segment_ids.astype(jnp.int32)
    if key_padding_mask.ndim != 2:
        raise ValueError(
            f"attention: key_padding_mask must be (B, Lk) booleans, got {key_padding_mask.shape}"
        )
    batch, kv_len = key_padding_mask.shape
    if q_segment_ids is None:
        q_segment_ids = jnp.zeros((batch, q_len), jnp.int32)
        kv_segment_ids = jnp.zeros((batch, kv_len), jnp.int32)
    kv_segment_ids = jnp.where(key_padding_mask, kv_segment_ids.astype(jnp.int32), -1)
    return q_segment_ids.astype(jnp.int32), kv_segment_ids


def attention_reference(
    q: Float[Array, "b lq h d"],
    k: Float[Array, "b lk hkv d"],
    v: Float[Array, "b lk hkv d"],
    *,
    causal: bool = False,
    scale: float | None = None,
    q_segment_ids: Int[Array, "b lq"] | None = None,
    kv_segment_ids: Int[Array, "b lk"] | None = None,
    return_lse: bool = False,
):
    """Attention with float32 accumulation, materialising the logits.

    Args:
      q, k, v: (B, Lq, H, D), (B, Lk, Hkv, D), (B, Lk, Hkv, D).
      causal: top-left causal mask (key ``j`` visible to query ``i`` iff ``j <= i``).
      scale: logits scale, default ``1/sqrt(D)``.
      q_segment_ids, kv_segment_ids: optional (B, Lq), (B, Lk) int ids; equal ids attend.
      return_lse: also return the natural-log log-sum-exp, (B, H, Lq) float32.

    Returns:
      ``out`` (B, Lq, H, D) in ``q.dtype``, or ``(out, lse)`` when ``return_lse``.
    """
    heads, kv_heads = check_shapes(q, k, v)
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    group = heads // kv_heads
    qf = q.astype(jnp.float32)
    # Repeat each kv head for the `group` query heads that read it (h -> h // group).
    kf = jnp.repeat(k.astype(jnp.float32), group, axis=2)
    vf = jnp.repeat(v.astype(jnp.float32), group, axis=2)
    s = jnp.einsum("bqhd,bkhd->bhqk", qf, kf, precision=jax.lax.Precision.HIGHEST) * scale
    lq, lk = q.shape[1], k.shape[1]
    visible = jnp.ones((1, 1, lq, lk), bool)
    if causal:
        visible = visible & (jnp.arange(lq)[:, None] >= jnp.arange(lk)[None, :])[None, None]
    if q_segment_ids is not None:
        seg = q_segment_ids[:, None, :, None] == kv_segment_ids[:, None, None, :]
        visible = visible & seg
    s = jnp.where(visible, s, -jnp.inf)
    # The row max only stabilises exp(); softmax does not depend on it, so no gradient flows
    # through it (as in jax.nn.softmax). Fully masked rows use 0 to avoid inf - inf = NaN.
    m = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    p = jnp.exp(s - m_safe)
    l = jnp.sum(p, axis=-1, keepdims=True)
    p = p / jnp.where(l == 0, 1.0, l)
    out = jnp.einsum("bhqk,bkhd->bqhd", p, vf, precision=jax.lax.Precision.HIGHEST)
    out = out.astype(q.dtype)
    if not return_lse:
        return out
    lse = jnp.where(l[..., 0] == 0, jnp.inf, m_safe[..., 0] + jnp.log(l[..., 0]))
    return out, lse
