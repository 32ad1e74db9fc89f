"""Plain-``jnp`` attention: the ground truth for the fused kernels and their CPU fallback.

Conventions shared by every path in ``kernels/flash_attention`` (reference, Pallas, Triton):

* Layout ``q: (B, Lq, H, D)``, ``k, v: (B, Lk, Hkv, D)`` with ``H % Hkv == 0``; query head ``h``
  reads key/value head ``h // (H // Hkv)`` (grouped-query attention, GQA).
* ``scale`` defaults to ``1 / sqrt(D)``.
* ``causal``: query ``i`` sees keys ``j <= i`` (top-left alignment, as
  ``jax.nn.dot_product_attention(is_causal=True)``; with ``Lq != Lk`` this is *not* the
  bottom-right alignment used for KV-cache decoding).
* Masks are given as segment ids: query ``i`` sees key ``j`` only when
  ``q_segment_ids[b, i] == kv_segment_ids[b, j]``; ids are (B, Lq) and (B, Lk) exactly (a
  shorter array would leave keys unmasked, so every entry point checks the shapes). A
  key-padding mask becomes segment ids by :func:`segments_from_padding` (padded keys get an id
  that no query of their batch row carries: -1 for the usual non-negative ids).
* A query row that sees no key returns 0 (not NaN, not the mean of V), and its log-sum-exp is
  ``+inf`` so that the backward's ``exp(s - lse)`` is exactly 0 there.
* Accumulation is float32 for bf16/fp16/fp32 inputs (upcast once) and float64 for float64
  inputs (with ``jax_enable_x64``: a float64 request is never silently computed in float32);
  the output is cast back to ``q.dtype``. The log-sum-exp is returned in natural log, in the
  accumulation dtype.

The reference materialises the (B, H, Lq, Lk) logits: memory O(Lq*Lk), fine for tests and for
the CPU fallback, not for long sequences on GPU (that is what the kernels are for).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "attention_reference",
    "segments_from_padding",
    "check_shapes",
    "check_segment_ids",
    "accumulation_dtype",
]


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
    if kv_heads < 1:
        raise ValueError(f"attention: k{k.shape} and v{v.shape} need at least one kv head")
    if q.shape[3] < 1:
        raise ValueError(f"attention: head_dim of q{q.shape} must be >= 1 (the scale is 1/sqrt(D))")
    if heads % kv_heads:
        raise ValueError(
            f"attention: q heads ({heads}) must be a multiple of kv heads ({kv_heads}) for GQA"
        )
    return heads, kv_heads


def check_segment_ids(
    q: jax.Array,
    k: jax.Array,
    q_segment_ids: jax.Array | None,
    kv_segment_ids: jax.Array | None,
    names: tuple[str, str] = ("q_segment_ids", "kv_segment_ids"),
) -> None:
    """Check that segment ids are (B, Lq) and (B, Lk) for q (B, Lq, H, D) and k (B, Lk, Hkv, D).

    The kernels read ids block by block with the lengths of q and k: a shorter kv array leaves
    the keys it does not cover visible, a longer one is silently cut. ``names`` are the
    argument names the caller's user sees in the error.

    Raises:
      ValueError: naming the argument, its shape and the shape it must have.
    """
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError(f"attention: give both {names[0]} and {names[1]}, or neither")
    if q_segment_ids is None:
        return
    pairs = ((names[0], q_segment_ids, q, "q"), (names[1], kv_segment_ids, k, "k"))
    for name, ids, x, what in pairs:
        want = (x.shape[0], x.shape[1])
        if tuple(ids.shape) != want:
            raise ValueError(
                f"attention: {name} has shape {tuple(ids.shape)} but {what} has shape "
                f"{tuple(x.shape)}; it must be (B, L{what}) = {want}"
            )


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32 for half and single precision inputs, float64 for float64 inputs."""
    return jnp.promote_types(dtype, jnp.float32)


def _id_absent_from(ids: Int[Array, "b l"]) -> Int[Array, "b 1"]:
    """Per row, an int32 value that ``ids`` (int32) does not contain.

    One below the row minimum (so -1 for ids starting at 0); if that would wrap (the minimum is
    the int32 minimum), one above the maximum; if both would wrap, the first gap in the sorted
    row (a row of ``L < 2**32`` ids always has one). Comparisons avoid int32 overflow.
    """
    if ids.shape[1] == 0:
        return jnp.full((ids.shape[0], 1), -1, jnp.int32)
    info = jnp.iinfo(jnp.int32)
    s = jnp.sort(ids, axis=1)
    lo, hi = s[:, :1], s[:, -1:]
    above = jnp.where(hi < info.max, hi + 1, hi)
    if ids.shape[1] > 1:  # one id cannot be both the int32 minimum and maximum
        gap = (s[:, :-1] < s[:, 1:]) & (s[:, :-1] + 1 != s[:, 1:])  # s[i] + 1 is absent
        first_gap = jnp.take_along_axis(s[:, :-1], jnp.argmax(gap, axis=1)[:, None], axis=1) + 1
        above = jnp.where(hi < info.max, hi + 1, first_gap)
    return jnp.where(lo > info.min, lo - 1, above)


def segments_from_padding(
    key_padding_mask: Bool[Array, "b lk"] | None,
    q_segment_ids: Int[Array, "b lq"] | None,
    kv_segment_ids: Int[Array, "b lk"] | None,
    q_len: int,
) -> tuple[jax.Array | None, jax.Array | None]:
    """Fold a key-padding mask into segment ids.

    A padded key gets an id that no query of its batch row carries (:func:`_id_absent_from`:
    -1 for non-negative ids), so it stays invisible whatever ids the caller uses; a fixed
    padding id would make padded keys visible to queries that happen to carry it, and under
    ``jit`` the ids cannot be checked.

    Args:
      key_padding_mask: True where a key is real; None for no padding.
      q_segment_ids, kv_segment_ids: int ids or None (both or neither).
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
    if q_segment_ids is None:  # every query has id 0: -1 is free
        q_segment_ids = jnp.zeros((batch, q_len), jnp.int32)
        kv_segment_ids = jnp.zeros((batch, kv_len), jnp.int32)
        pad_id = jnp.full((batch, 1), -1, jnp.int32)
    else:
        q_segment_ids = q_segment_ids.astype(jnp.int32)
        pad_id = _id_absent_from(q_segment_ids)
    kv_segment_ids = jnp.where(key_padding_mask, kv_segment_ids.astype(jnp.int32), pad_id)
    return q_segment_ids, kv_segment_ids


def attention_reference(
    q: Float[Array, "b lq h d"],
    k: Float[Array, "b lk hkv d"],
    v: Float[Array, "b lk hkv d"],
    *,
    causal: bool = False,
    scale: float | None = None,
    q_segment_ids: Int[Array, "b lq"] | None = None,
    kv_segment_ids: Int[Array, "b lk"] | None = None,
    bias: Float[Array, ...] | None = None,
    mask: Bool[Array, ...] | None = None,
    return_lse: bool = False,
):
    """Attention with float32 (float64 for float64 inputs) accumulation, materialising the logits.

    Args:
      q, k, v: (B, Lq, H, D), (B, Lk, Hkv, D), (B, Lk, Hkv, D).
      causal: top-left causal mask (key ``j`` visible to query ``i`` iff ``j <= i``).
      scale: logits scale, default ``1/sqrt(D)``.
      q_segment_ids, kv_segment_ids: optional (B, Lq), (B, Lk) int ids; equal ids attend.
      bias: optional additive logits bias broadcastable to (B, H, Lq, Lk) (the kernels take
        none; here so that ``jaxfm.nn.attention`` can compute float64 calls exactly).
      mask: optional booleans broadcastable to (B, H, Lq, Lk), True where a key is visible.
      return_lse: also return the natural-log log-sum-exp, (B, H, Lq), accumulation dtype.

    Returns:
      ``out`` (B, Lq, H, D) in ``q.dtype``, or ``(out, lse)`` when ``return_lse``.
    """
    heads, kv_heads = check_shapes(q, k, v)
    check_segment_ids(q, k, q_segment_ids, kv_segment_ids)
    acc = accumulation_dtype(q.dtype)
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    group = heads // kv_heads
    qf = q.astype(acc)
    # Repeat each kv head for the `group` query heads that read it (h -> h // group).
    kf = jnp.repeat(k.astype(acc), group, axis=2)
    vf = jnp.repeat(v.astype(acc), group, axis=2)
    s = jnp.einsum("bqhd,bkhd->bhqk", qf, kf, precision=jax.lax.Precision.HIGHEST) * scale
    if bias is not None:
        s = s + bias.astype(acc)
    lq, lk = q.shape[1], k.shape[1]
    visible = jnp.ones((1, 1, lq, lk), bool)
    if causal:
        visible = visible & (jnp.arange(lq)[:, None] >= jnp.arange(lk)[None, :])[None, None]
    if q_segment_ids is not None:
        seg = q_segment_ids[:, None, :, None] == kv_segment_ids[:, None, None, :]
        visible = visible & seg
    if mask is not None:
        visible = visible & mask
    s = jnp.where(visible, s, -jnp.inf)
    # The row max only stabilises exp(); softmax does not depend on it, so no gradient flows
    # through it (as in jax.nn.softmax). Fully masked rows use 0 to avoid inf - inf = NaN.
    m = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True, initial=-jnp.inf))
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
