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

from jaxfm.nn.bidirectional import Bidirectional
from jaxfm.nn.mamba import Mamba
from jaxfm.nn.mlp import MLP
from jaxfm.nn.moe import MoE
from jaxfm.nn.norms import LayerNorm, RMSNorm
from jaxfm.nn.ssd import Mamba2
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
    # --- state-space mixers (mamba, mamba2); non-causal trunks wrap them bidirectionally
    d_state: int = 16
    """State size N per channel (mamba) or per head (mamba2; reference 64-128)."""
    d_conv: int = 4
    """Width of the causal depthwise convolution before the scan."""
    expand: int = 2
    """Inner width of the state-space mixers as a multiple of dim."""
    dt_rank: int | None = None
    """Rank of mamba's dt projection (None: ceil(dim / 16))."""
    scan: Literal["chunked", "assoc", "linear"] = "chunked"
    """Selective-scan backend of mamba: chunked (memory independent of length), assoc
    (parallel associative scan), linear (sequential reference)."""
    ssm_chunk: int = 64
    """Chunk length of the chunked scan (mamba) and of the SSD algorithm (mamba2)."""
    headdim: int = 32
    """Channels per head of mamba2 (expand * dim must be divisible by it)."""
    ssm_mlp: bool = False
    """Add the feed-forward layer after mamba/mamba2 mixers (Mamba's reference has none)."""
    # --- mixture of experts (kind = moe: attention mixer + MoE feed-forward)
    n_experts: int = 8
    """Number of experts of the MoE feed-forward layer."""
    top_k: int = 2
    """Experts per token."""
    moe_dispatch: Literal["dropless", "capacity", "dense"] = "dropless"
    """dropless (sort + ragged_dot), capacity (fixed slots, drops overflow) or dense (all
    experts on all tokens; a reference for tiny models)."""
    capacity_factor: float = 1.25
    """Slots per expert relative to a balanced load (capacity dispatch only)."""
    moe_hidden_ratio: float | None = None
    """Hidden width of each expert as a multiple of dim (None: mlp_ratio / top_k, so the
    active compute per token matches the dense MLP)."""
    lb_weight: float = 0.01
    """Weight of the Switch load-balancing loss."""
    z_weight: float = 1e-4
    """Weight of the router z-loss."""
    bias_rate: float = 0.0
    """Step of the auxiliary-loss-free router-bias balancing (0: off)."""


def _attention(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    return MultiHeadAttention(
        cfg.dim,
        cfg.heads,
        kv_heads=cfg.kv_heads,
        qk_norm=cfg.qk_norm,
        causal=cfg.causal,
        impl=cfg.attn_impl,
        rngs=rngs,
    )


def _mlp(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    return MLP(
        cfg.dim,
        int(cfg.dim * cfg.mlp_ratio),
        activation=cfg.activation,
        dropout=cfg.dropout,
        rngs=rngs,
    )


def _n_residual(cfg: TrunkConfig) -> int:
    return 2 if cfg.ssm_mlp else 1


def _bidirectional_unless_causal(cfg: TrunkConfig, make) -> nnx.Module:
    return make() if cfg.causal else Bidirectional(make(), make())


def _mamba(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    make = lambda: Mamba(
        cfg.dim,
        d_state=cfg.d_state,
        d_conv=cfg.d_conv,
        expand=cfg.expand,
        dt_rank=cfg.dt_rank,
        scan=cfg.scan,
        chunk=cfg.ssm_chunk,
        n_layer=cfg.depth,
        n_residual=_n_residual(cfg),
        rngs=rngs,
    )
    return _bidirectional_unless_causal(cfg, make)


def _mamba2(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    make = lambda: Mamba2(
        cfg.dim,
        d_state=cfg.d_state,
        d_conv=cfg.d_conv,
        expand=cfg.expand,
        headdim=cfg.headdim,
        chunk=cfg.ssm_chunk,
        n_layer=cfg.depth,
        n_residual=_n_residual(cfg),
        rngs=rngs,
    )
    return _bidirectional_unless_causal(cfg, make)


def _ssm_mlp(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module | None:
    return _mlp(cfg, rngs) if cfg.ssm_mlp else None


def _moe(cfg: TrunkConfig, rngs: nnx.Rngs) -> nnx.Module:
    ratio = cfg.moe_hidden_ratio or cfg.mlp_ratio / cfg.top_k
    return MoE(
        cfg.dim,
        max(1, int(cfg.dim * ratio)),
        cfg.n_experts,
        cfg.top_k,
        activation=cfg.activation,
        dispatch=cfg.moe_dispatch,
        capacity_factor=cfg.capacity_factor,
        lb_weight=cfg.lb_weight,
        z_weight=cfg.z_weight,
        bias_rate=cfg.bias_rate,
        rngs=rngs,
    )


# name -> (mixer builder, feed-forward builder; a builder may return None: mixer-only block)
MIXERS: dict[
    str,
    tuple[
        Callable[[TrunkConfig, nnx.Rngs], nnx.Module],
        Callable[[TrunkConfig, nnx.Rngs], nnx.Module | None] | None,
    ],
] = {
    "attention": (_attention, _mlp),
    "mamba": (_mamba, _ssm_mlp),
    "mamba2": (_mamba2, _ssm_mlp),
    "moe": (_attention, _moe),
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
    ffn = make_ffn(cfg, rngs) if make_ffn else None
    return Block(
        cfg.dim,
        make_mixer(cfg, rngs),
        ffn,
        norm=_NORMS[cfg.norm],
        layer_scale=cfg.layer_scale,
        drop_path=rate,
    )


class Trunk(nnx.Module):
    """``cfg.depth`` blocks applied in turn, (B, L, dim) -> (B, L, dim), plus a final norm."""

    def __init__(self, cfg: TrunkConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List([build_block(cfg, i, rngs) for i in range(cfg.depth)])
        self.norm = _NORMS[cfg.norm](cfg.dim)

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        for block in self.blocks:
            x = block(x, mask=mask, deterministic=deterministic, rngs=rngs)
        return self.norm(x)


def count_params(module: nnx.Module) -> int:
    """Number of scalar parameters (``nnx.Param`` leaves) in ``module``."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param))))
