"""Swappable trunks: a stack of pre-norm blocks whose mixer and feed-forward are chosen by config.

Two config lines change every model built on :class:`Trunk`: ``mixer`` (the sequence mixer:
``attention | mamba | mamba2``) and ``ffn`` (the per-token feed-forward: ``mlp | moe | none``),
so a researcher can ask whether a state-space or sparse trunk beats attention at equal budget.
A mixture-of-experts trunk is ``mixer="attention", ffn="moe"``; Mamba's reference block (no
feed-forward) is ``mixer="mamba", ffn="none"``. Each module's own settings live in a typed
sub-config (``attention``, ``mamba``, ``mamba2``, ``mlp``, ``moe``), so every one of them is
reachable from a model config and from the command line (``--model.trunk.mamba.d_state 8``);
the sub-configs of the modules not chosen are ignored.

Every mixer has one call shape,
``mixer(x: (B, L, D), *, mask=None, deterministic=True, rngs=None) -> (B, L, D)``, and every
feed-forward module ``ffn(x, *, deterministic=True, rngs=None)``. A builder in either registry
is ``builder(cfg: TrunkConfig, layer: Layer, rngs) -> module`` (an FFN builder may return
None: a mixer-only block); ``layer`` says where the module sits (block index and the depth of
the stack it belongs to, which Mamba's output-projection init scaling needs).

The registries below are explicit tables (no import-time magic): to add a mixer or a
feed-forward, write the module in ``jaxfm/nn/``, a sub-config and a builder here, and add one
line to ``MIXERS`` or ``FFNS`` (and the name to ``MixerName`` / ``FFNName``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from flax import nnx

from jaxfm.nn.bidirectional import Bidirectional
from jaxfm.nn.layer_stack import RematName, block_inputs, block_rngs, check_remat, run_stack
from jaxfm.nn.mamba import Mamba
from jaxfm.nn.mlp import MLP
from jaxfm.nn.moe import MoE
from jaxfm.nn.norms import LayerNorm, RMSNorm
from jaxfm.nn.ssd import Mamba2
from jaxfm.nn.transformer import Block, MultiHeadAttention

MixerName = Literal["attention", "mamba", "mamba2"]
FFNName = Literal["mlp", "moe", "none"]


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Multi-head attention mixer (``mixer = attention``)."""

    heads: int = 4
    """Attention heads (dim must be divisible by it)."""
    kv_heads: int | None = None
    """Key/value heads for grouped-query attention (None: same as heads)."""
    qk_norm: bool = False
    """RMS-normalise queries and keys per head (stabilises attention logits)."""
    attn_impl: str = "auto"
    """Attention implementation: auto, xla, cudnn, mosaic, pallas or triton."""


@dataclasses.dataclass(frozen=True)
class MambaConfig:
    """Mamba-1 selective-scan mixer (``mixer = mamba``); non-causal trunks run it both ways."""

    d_state: int = 16
    """State size N per channel."""
    d_conv: int = 4
    """Width of the causal depthwise convolution before the scan."""
    expand: int = 2
    """Inner width as a multiple of dim."""
    dt_rank: int | None = None
    """Rank of the dt projection (None: ceil(dim / 16))."""
    dt_min: float = 1e-3
    """Smallest initial step size dt."""
    dt_max: float = 0.1
    """Largest initial step size dt."""
    dt_floor: float = 1e-4
    """Floor of the initial step sizes."""
    scan: Literal["chunked", "assoc", "linear"] = "chunked"
    """Selective-scan backend: chunked (memory independent of length), assoc (parallel
    associative scan), linear (sequential reference)."""
    chunk: int = 64
    """Chunk length of the chunked scan."""
    conv_bias: bool = True
    """Bias in the depthwise convolution."""
    bias: bool = False
    """Biases in the input and output projections."""


@dataclasses.dataclass(frozen=True)
class Mamba2Config:
    """Mamba-2 / SSD mixer (``mixer = mamba2``); non-causal trunks run it both ways."""

    d_state: int = 16
    """State size N per head (reference 64-128)."""
    d_conv: int = 4
    """Width of the causal depthwise convolution before the scan."""
    expand: int = 2
    """Inner width as a multiple of dim."""
    headdim: int = 32
    """Channels per head (expand * dim must be divisible by it)."""
    ngroups: int = 1
    """Groups sharing B and C (heads must be divisible by it)."""
    chunk: int = 64
    """Chunk length of the SSD algorithm."""
    dt_min: float = 1e-3
    """Smallest initial step size dt."""
    dt_max: float = 0.1
    """Largest initial step size dt."""
    dt_floor: float = 1e-4
    """Floor of the initial step sizes."""


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Dense feed-forward layer (``ffn = mlp``)."""

    mlp_ratio: float = 4.0
    """Hidden width as a multiple of dim."""
    activation: Literal["gelu", "swiglu"] = "gelu"
    """Activation (swiglu keeps the parameter count: hidden scaled by 2/3)."""
    dropout: float = 0.0
    """Dropout after the hidden layer."""


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    """Top-k mixture-of-experts feed-forward layer (``ffn = moe``)."""

    n_experts: int = 8
    """Number of experts."""
    top_k: int = 2
    """Experts per token."""
    hidden_ratio: float | None = None
    """Hidden width of each expert as a multiple of dim (None: mlp.mlp_ratio / top_k, so the
    active compute per token matches the dense MLP)."""
    activation: Literal["gelu", "swiglu"] = "gelu"
    """Expert activation."""
    dispatch: Literal["dropless", "capacity", "dense"] = "dropless"
    """dropless (sort + ragged_dot), capacity (fixed slots, drops overflow) or dense (all
    experts on all tokens; a reference for tiny models)."""
    capacity_factor: float = 1.25
    """Slots per expert relative to a balanced load (capacity dispatch only)."""
    lb_weight: float = 0.01
    """Weight of the Switch load-balancing loss."""
    z_weight: float = 1e-4
    """Weight of the router z-loss."""
    bias_rate: float = 0.0
    """Step of the auxiliary-loss-free router-bias balancing (0: off)."""


# Flat TrunkConfig fields of configs saved before the sub-configs, -> (sub-config, field).
_LEGACY_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "heads": (("attention", "heads"),),
    "kv_heads": (("attention", "kv_heads"),),
    "qk_norm": (("attention", "qk_norm"),),
    "attn_impl": (("attention", "attn_impl"),),
    "mlp_ratio": (("mlp", "mlp_ratio"),),
    "activation": (("mlp", "activation"), ("moe", "activation")),
    "dropout": (("mlp", "dropout"),),
    "d_state": (("mamba", "d_state"), ("mamba2", "d_state")),
    "d_conv": (("mamba", "d_conv"), ("mamba2", "d_conv")),
    "expand": (("mamba", "expand"), ("mamba2", "expand")),
    "dt_rank": (("mamba", "dt_rank"),),
    "scan": (("mamba", "scan"),),
    "ssm_chunk": (("mamba", "chunk"), ("mamba2", "chunk")),
    "headdim": (("mamba2", "headdim"),),
    "n_experts": (("moe", "n_experts"),),
    "top_k": (("moe", "top_k"),),
    "moe_dispatch": (("moe", "dispatch"),),
    "capacity_factor": (("moe", "capacity_factor"),),
    "moe_hidden_ratio": (("moe", "hidden_ratio"),),
    "lb_weight": (("moe", "lb_weight"),),
    "z_weight": (("moe", "z_weight"),),
    "bias_rate": (("moe", "bias_rate"),),
}
# Old ``kind`` values -> (mixer, ffn); ``ssm_mlp`` chose the SSM kinds' ffn.
_LEGACY_KINDS = {"attention": ("attention", "mlp"), "moe": ("attention", "moe")}


def move_legacy_fields(data: dict[str, Any], legacy: dict) -> dict[str, Any]:
    """``data`` with flat keys moved into sub-config dicts as ``legacy`` says (new keys win)."""
    out = {k: v for k, v in data.items() if k not in legacy}
    for key, targets in legacy.items():
        if key in data:
            for section, name in targets:
                sub = out.setdefault(section, {})
                if isinstance(sub, dict):
                    sub.setdefault(name, data[key])
    return out


@dataclasses.dataclass(frozen=True)
class TrunkConfig:
    """A stack of residual blocks: a sequence mixer, then a feed-forward layer."""

    mixer: MixerName = "attention"
    """Sequence mixer, a name in jaxfm.nn.trunk.MIXERS: attention, mamba (selective scan) or
    mamba2 (SSD); its settings are the sub-config of the same name."""
    ffn: FFNName = "mlp"
    """Feed-forward after the mixer, a name in jaxfm.nn.trunk.FFNS: mlp (dense), moe
    (mixture of experts) or none (mixer-only blocks, Mamba's reference); its settings are the
    sub-config of the same name."""
    depth: int = 4
    """Number of blocks."""
    dim: int = 128
    """Model width."""
    causal: bool = False
    """Causal mixing (language-model style) instead of bidirectional; non-causal trunks run
    the state-space mixers in both directions."""
    norm: Literal["rmsnorm", "layernorm"] = "layernorm"
    """Normalisation inside the blocks."""
    layer_scale: float | None = None
    """Initial LayerScale value (None: no LayerScale)."""
    drop_path: float = 0.0
    """Stochastic-depth rate of the last block (linearly increasing from 0)."""
    scan_layers: bool = False
    """Run the blocks as one scanned loop, traced and compiled once, instead of unrolled; same
    parameters and checkpoints either way (jaxfm.nn.layer_stack). Off by default: on CPU it
    shortens the compile of deep stacks (depth 24) but slows the step and adds two copies of
    the blocks' parameters (results/bench_surrogate_layers, results/bench_surrogate_depth)."""
    remat: RematName = "none"
    """Rematerialisation of each block in the backward pass: none, full, dots or
    dots_no_batch (jaxfm.nn.layer_stack)."""
    attention: AttentionConfig = AttentionConfig()
    """Attention mixer settings."""
    mamba: MambaConfig = MambaConfig()
    """Mamba mixer settings."""
    mamba2: Mamba2Config = Mamba2Config()
    """Mamba-2 (SSD) mixer settings."""
    mlp: MLPConfig = MLPConfig()
    """Dense feed-forward settings."""
    moe: MoEConfig = MoEConfig()
    """Mixture-of-experts feed-forward settings."""

    @classmethod
    def migrate_dict(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Reads configs saved with the flat ``kind`` / ``d_state`` / ... fields (see
        :func:`jaxfm.config.from_dict`): ``kind=moe`` is attention + the MoE feed-forward."""
        if not set(data) & (set(_LEGACY_FIELDS) | {"kind", "ssm_mlp"}):
            return data
        data = dict(data)
        kind, ssm_mlp = data.pop("kind", None), data.pop("ssm_mlp", False)
        if kind is not None:
            mixer, ffn = _LEGACY_KINDS.get(kind, (kind, "mlp" if ssm_mlp else "none"))
            data.setdefault("mixer", mixer)
            data.setdefault("ffn", ffn)
        return move_legacy_fields(data, _LEGACY_FIELDS)


class Layer(NamedTuple):
    """Where a module sits: what its construction needs to know about the network."""

    index: int
    """Block index, 0-based."""
    depth: int
    """Number of blocks of the stack the module belongs to (Mamba's ``n_layer``)."""


def _attention(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
    a = cfg.attention
    return MultiHeadAttention(
        cfg.dim,
        a.heads,
        kv_heads=a.kv_heads,
        qk_norm=a.qk_norm,
        causal=cfg.causal,
        impl=a.attn_impl,
        rngs=rngs,
    )


def _n_residual(cfg: TrunkConfig) -> int:
    """Residual branches per block: the mixer, plus the feed-forward unless ``ffn = none``."""
    return 1 if cfg.ffn == "none" else 2


def _bidirectional_unless_causal(cfg: TrunkConfig, make) -> nnx.Module:
    return make() if cfg.causal else Bidirectional(make(), make())


def _state_space(module: type[nnx.Module], section: str):
    """The builder of a state-space mixer: every field of its sub-config (``cfg.<section>``)
    is a constructor argument of ``module``; depth and residual count come from the stack."""

    def build(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
        kw = dataclasses.asdict(getattr(cfg, section))
        make = lambda: module(
            cfg.dim, **kw, n_layer=layer.depth, n_residual=_n_residual(cfg), rngs=rngs
        )
        return _bidirectional_unless_causal(cfg, make)

    return build


_mamba = _state_space(Mamba, "mamba")
_mamba2 = _state_space(Mamba2, "mamba2")


def _mlp(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
    m = cfg.mlp
    return MLP(
        cfg.dim, int(cfg.dim * m.mlp_ratio), activation=m.activation, dropout=m.dropout, rngs=rngs
    )


def _moe(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
    m = cfg.moe
    ratio = m.hidden_ratio or cfg.mlp.mlp_ratio / m.top_k
    return MoE(
        cfg.dim,
        max(1, int(cfg.dim * ratio)),
        m.n_experts,
        m.top_k,
        activation=m.activation,
        dispatch=m.dispatch,
        capacity_factor=m.capacity_factor,
        lb_weight=m.lb_weight,
        z_weight=m.z_weight,
        bias_rate=m.bias_rate,
        rngs=rngs,
    )


def _no_ffn(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> None:
    return None


Builder = Callable[[TrunkConfig, Layer, nnx.Rngs], nnx.Module | None]

# name -> builder of the sequence mixer, (B, L, D) -> (B, L, D)
MIXERS: dict[str, Builder] = {
    "attention": _attention,
    "mamba": _mamba,
    "mamba2": _mamba2,
}

# name -> builder of the feed-forward, (..., D) -> (..., D), or None (mixer-only block)
FFNS: dict[str, Builder] = {
    "mlp": _mlp,
    "moe": _moe,
    "none": _no_ffn,
}

_NORMS = {"rmsnorm": RMSNorm, "layernorm": LayerNorm}


def _lookup(table: dict[str, Builder], what: str, name: str) -> Builder:
    if name not in table:
        raise ValueError(f"unknown trunk {what} {name!r}; choose one of {sorted(table)}")
    return table[name]


def build_mixer(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
    """The sequence mixer ``cfg.mixer`` of the block at ``layer``."""
    return _lookup(MIXERS, "mixer", cfg.mixer)(cfg, layer, rngs)


def build_ffn(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module | None:
    """The feed-forward ``cfg.ffn`` of the block at ``layer`` (None for ``ffn = none``)."""
    return _lookup(FFNS, "ffn", cfg.ffn)(cfg, layer, rngs)


def build_block(cfg: TrunkConfig, index: int, rngs: nnx.Rngs) -> Block:
    """Block ``index`` of a trunk described by ``cfg``."""
    _lookup(MIXERS, "mixer", cfg.mixer)  # fail before building anything
    _lookup(FFNS, "ffn", cfg.ffn)
    if cfg.norm not in _NORMS:
        raise ValueError(f"unknown norm {cfg.norm!r}; choose one of {sorted(_NORMS)}")
    check_remat(cfg.remat)
    layer = Layer(index, cfg.depth)
    mixer = build_mixer(cfg, layer, rngs)
    return Block(
        cfg.dim,
        mixer,
        build_ffn(cfg, layer, rngs),
        norm=_NORMS[cfg.norm],
        layer_scale=cfg.layer_scale,
        drop_path=drop_rates(cfg)[index],
    )


def drop_rates(cfg: TrunkConfig) -> tuple[float, ...]:
    """Stochastic-depth rate of each block: linear from 0 to ``cfg.drop_path``."""
    return tuple(cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth))


class Trunk(nnx.Module):
    """``cfg.depth`` blocks applied in turn, (B, L, dim) -> (B, L, dim), plus a final norm."""

    def __init__(self, cfg: TrunkConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List([build_block(cfg, i, rngs) for i in range(cfg.depth)])
        for block in self.blocks:  # the rates travel as data (``drop_rates``), so the
            block.drop_path = 0.0  # blocks' static settings match and the stack can scan
        self.norm = _NORMS[cfg.norm](cfg.dim)

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        def step(block, h, extra):
            return block(
                h,
                mask=mask,
                deterministic=deterministic,
                rngs=block_rngs(extra),
                drop_rate=extra["drop_rate"],
            )

        per_block = block_inputs(
            self.blocks, drop_rates(self.cfg), deterministic=deterministic, rngs=rngs
        )
        x = run_stack(
            self.blocks, x, step, per_block, scan=self.cfg.scan_layers, remat=self.cfg.remat
        )
        return self.norm(x)


def count_params(module: nnx.Module) -> int:
    """Number of scalar parameters (``nnx.Param`` leaves) in ``module``."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param))))
