"""Multi-head attention and the pre-norm residual block used by every transformer in jaxfm.

Attention always goes through :func:`jaxfm.nn.attention.dot_product_attention`, so fused
kernels (Pallas, Triton, cuDNN) are used wherever a model attends. Options cover what the
models need: grouped-query attention (``kv_heads``), QK-norm (Dehghani et al. 2023, used by
MPP's AViT), an additive logits bias (relative position bias), cross attention (``context``)
and causal masking.

Block (pre-norm, as in ViT / MPP):
    x = x + drop_path(ls1 * mixer(norm1(x)))
    x = x + drop_path(ls2 * mlp(norm2(x)))
``ls`` is LayerScale (Touvron et al. 2021), ``drop_path`` stochastic depth (Huang et al. 2016).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.nn.attention import dot_product_attention
from jaxfm.nn.mlp import dense
from jaxfm.nn.norms import RMSNorm
from jaxfm.nn.params import param


class MultiHeadAttention(nnx.Module):
    """(B, L, dim) -> (B, L, dim) attention; keys/values from ``context`` when given."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        kv_heads: int | None = None,
        head_dim: int | None = None,
        qk_norm: bool = False,
        causal: bool = False,
        impl: str = "auto",
        context_dim: int | None = None,
        rngs: nnx.Rngs,
    ):
        kv_heads = heads if kv_heads is None else kv_heads
        if heads < 1 or kv_heads < 1:
            raise ValueError(
                f"attention needs heads >= 1 and kv_heads >= 1, got heads={heads}, "
                f"kv_heads={kv_heads}"
            )
        if heads % kv_heads:
            raise ValueError(f"heads={heads} must be a multiple of kv_heads={kv_heads}")
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim={dim} is not divisible by heads={heads}")
            head_dim = dim // heads
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.impl = causal, impl
        cdim = context_dim or dim
        self.q = dense(dim, heads * head_dim, ("embed", "heads"), rngs)
        self.k = dense(cdim, kv_heads * head_dim, ("embed", "heads"), rngs)
        self.v = dense(cdim, kv_heads * head_dim, ("embed", "heads"), rngs)
        self.out = dense(heads * head_dim, dim, ("heads", "embed"), rngs)
        self.q_norm = RMSNorm(head_dim) if qk_norm else None
        self.k_norm = RMSNorm(head_dim) if qk_norm else None

    def __call__(
        self,
        x: jax.Array,
        *,
        context: jax.Array | None = None,
        mask: jax.Array | None = None,
        bias: jax.Array | None = None,
        key_padding_mask: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """Args: x (B, Lq, dim); context (B, Lk, context_dim); mask bool, True = attend,
        broadcastable to (B, heads, Lq, Lk); bias additive, broadcastable likewise;
        key_padding_mask (B, Lk) bool, True = a real key. Prefer ``key_padding_mask`` to an
        equivalent ``mask`` for padding: the fused kernels take it, a general mask falls back
        to XLA."""
        del deterministic, rngs  # attention dropout is not used by jaxfm's models
        ctx = x if context is None else context
        b, lq, _ = x.shape
        lk = ctx.shape[1]
        q = self.q(x).reshape(b, lq, self.heads, self.head_dim)
        k = self.k(ctx).reshape(b, lk, self.kv_heads, self.head_dim)
        v = self.v(ctx).reshape(b, lk, self.kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        o = dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            mask=mask,
            causal=self.causal,
            impl=self.impl,
            key_padding_mask=key_padding_mask,
        )
        return self.out(o.reshape(b, lq, self.heads * self.head_dim))


class LayerScale(nnx.Module):
    """Per-channel learnable residual scale, initialised small (``init``)."""

    def __init__(self, dim: int, init: float):
        self.gamma = param(jnp.full((dim,), init, jnp.float32), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.gamma[...].astype(x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))


def drop_path(
    x: jax.Array, rate: float | jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None
) -> jax.Array:
    """Stochastic depth: zero the whole residual branch per sample with prob ``rate``.

    ``rate`` may be a traced scalar (a scanned stack passes each block's rate as data)."""
    if deterministic or rngs is None or (isinstance(rate, (int, float)) and rate == 0.0):
        return x
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


class Block(nnx.Module):
    """Pre-norm residual block around any mixer (attention, Mamba, SSD) and an MLP or MoE.

    The mixer and the feed-forward module are built by the caller (see ``jaxfm.nn.trunk``),
    so one block class serves every trunk. ``ffn=None`` gives a mixer-only block (Mamba style).
    """

    def __init__(
        self,
        dim: int,
        mixer: nnx.Module,
        ffn: nnx.Module | None,
        *,
        norm: type[nnx.Module] = RMSNorm,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
    ):
        self.norm1, self.mixer = norm(dim), mixer
        self.norm2 = norm(dim) if ffn is not None else None
        self.ffn = ffn
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else None
        self.ls2 = LayerScale(dim, layer_scale) if (layer_scale and ffn is not None) else None
        self.drop_path = drop_path

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        drop_rate: float | jax.Array | None = None,
        **mixer_kwargs,
    ) -> jax.Array:
        """``drop_rate`` overrides the stored stochastic-depth rate (a scanned stack passes
        it per block)."""
        rate = self.drop_path if drop_rate is None else drop_rate
        h = self.mixer(
            self.norm1(x), mask=mask, deterministic=deterministic, rngs=rngs, **mixer_kwargs
        )
        if self.ls1 is not None:
            h = self.ls1(h)
        x = x + drop_path(h, rate, deterministic=deterministic, rngs=rngs)
        if self.ffn is not None:
            h = self.ffn(self.norm2(x), deterministic=deterministic, rngs=rngs)
            if self.ls2 is not None:
                h = self.ls2(h)
            x = x + drop_path(h, rate, deterministic=deterministic, rngs=rngs)
        return x
