"""Swappable trunks: a stack of pre-norm blocks whose mixer is chosen by config.

One config line changes the sequence mixer of every model built on :class:`Trunk`
(``kind = attention | mamba | mamba2 | moe``) so a researcher can ask whether a state-space
or sparse trunk beats attention at equal budget. Every mixer has one call shape,
``mixer(x: (B, L, D), *, mask=None, deterministic=True, rngs=None) -> (B, L, D)``, and every
feed-forward module ``ffn(x, *, deterministic=True, rngs=None)``.

The registries below are explicit tables (no import-time magic): to add a mixer, write the
module in ``jaxfm/nn/`` and add one line to ``MIXERS`` or ``FFNS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import numpy as np
from flax import nnx

from jaxfm.nn.mlp import MLP
from jaxfm.nn.norms import LayerNorm, RMSNorm
from jaxfm.nn.transformer import Block, MultiHeadAttention


@dataclasses.dataclass(frozen=True)
class TrunkConfig:
    """A stack of residual blocks."""

    kind: Literal["attention", "mamba", "mamba2", "moe"] = "attention"
    """Sequence mixer: attention, mamba (selective scan), mamba2 (SSD), or moe (attention
    mixer with a mixture-of-experts feed-forward)."""
    depth: int = 4
    """Number of blocks."""
    dim: int = 128
    """Model width."""
    heads: int = 4
    """Attention heads."""
    kv_heads: int | None = None
    """Key/value heads for grouped-query attention (None: same as heads)."""
    mlp_ratio: float = 4.0
    """Hidden width of the feed-forward layer, as a multiple of dim."""
    activation: Literal["gelu", "swiglu"] = "gelu"
    """Feed-forward activation."""
    qk_norm: bool = False
    """RMS-normalise queries and keys per head (stabilises attention logits)."""
    causal: bool = False
    """Causal masking (language-model style) instead of bidirectional."""
    attn_impl: str = "auto"
    """Attention implementation: auto, xla, cudnn, pallas or triton."""
    norm: Literal["rmsnorm", "layernorm"] = "layernorm"
    """Normalisation inside the blocks."""
    layer_scale: float | None = None
    """Initial LayerScale value (None: no LayerScale)."""
    drop_path: float = 0.0
    """Stochastic-depth rate of the last block (linearly increasing from 0)."""
    dropout: float = 0.0
    """Dropout inside the feed-forward layer."""


def _attention(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    return MultiHeadAttention(cfg.dim, cfg.heads, kv_heads=cfg.kv_heads, qk_norm=cfg.qk_norm,
                              causal=cfg.causal, impl=cfg.attn_impl, rngs=rngs)


def _mlp(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    return MLP(cfg.dim, int(cfg.dim * cfg.mlp_ratio), activation=cfg.activation,
               dropout=cfg.dropout, rngs=rngs)


# name -> (mixer builder, feed-forward builder or None for mixer-only blocks)
MIXERS: dict[str, tuple[Callable[[TrunkConfig, nnx.Rngs], nnx.Module],
                        Callable[[TrunkConfig, nnx.Rngs], nnx.Module] | None]] = {
    "attention": (_attention, _mlp),
}

_NORMS = {"rmsnorm": RMSNorm, "layernorm": LayerNorm}


def build_block(cfg: TrunkConfig, index: int, rngs: nnx.Rngs) -> Block:
    """Block ``index`` of a trunk described by ``cfg``."""
    if cfg.kind not in MIXERS:
        raise ValueError(f"unknown trunk kind {cfg.kind!r}; choose one of {sorted(MIXERS)}")
    if cfg.norm not in _NORMS:
        raise ValueError(f"unknown norm {cfg.norm!r}; choose one of {sorted(_NORMS)}")
    make_mixer, make_ffn = MIXERS[cfg.kind]
    rate = cfg.drop_path * index / max(cfg.depth - 1, 1)
    return Block(cfg.dim, make_mixer(cfg, rngs), make_ffn(cfg, rngs) if make_ffn else None,
                 norm=_NORMS[cfg.norm], layer_scale=cfg.layer_scale, drop_path=rate)


class Trunk(nnx.Module):
    """``cfg.depth`` blocks applied in turn, (B, L, dim) -> (B, L, dim), plus a final norm."""

    def __init__(self, cfg: TrunkConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List([build_block(cfg, i, rngs) for i in range(cfg.depth)])
        self.norm = _NORMS[cfg.norm](cfg.dim)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        for block in self.blocks:
            x = block(x, mask=mask, deterministic=deterministic, rngs=rngs)
        return self.norm(x)


def count_params(module: nnx.Module) -> int:
    """Number of scalar parameters (``nnx.Param`` leaves) in ``module``."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param))))
