"""AViT: the axial space-time transformer of Multiple Physics Pretraining (MPP).

McCabe et al., "Multiple Physics Pretraining for Spatiotemporal Surrogate Models",
NeurIPS 2024, arXiv 2310.02994; reference code PolymathicAI/multiple_physics_pretraining.

Forward pass, x (B, T, H, W, C) with field ids (B, C) -> next state (B, H, W, C):

1. RevIN: per sample and field, subtract the window's mean and divide by its std
   (``jaxfm.nn.revin``); the prediction is mapped back with the same statistics.
2. Shared field embedding over the global vocabulary -> dim/4 channels, then the hMLP stem
   (strides 4, 2, 2 = patch 16) -> tokens (B, T, H/16, W/16, dim)  (``jaxfm.nn.field_embed``).
3. ``depth`` space-time blocks. Time: instance norm -> mixer along T for every token -> instance
   norm -> linear -> layer-scale -> drop-path -> residual. Space: RMS instance norm -> the same
   mixer along each spatial axis (weights shared across axes), averaged -> RMS instance norm ->
   linear -> layer-scale -> residual; then MLP (4x, GELU) -> RMS instance norm -> layer-scale ->
   residual. The mixers are chosen by config (``time_mixer``, ``space_mixer``): ``attention``
   (default: MPP's multi-head attention with LayerNorm QK-norm and a T5 relative position bias
   that wraps on periodic axes) or any other mixer of ``jaxfm.nn.trunk.MIXERS`` with the
   shared call shape (B, L, D) -> (B, L, D), built from the config's ``mamba`` / ``mamba2``
   sub-configs with ``n_layer = depth``. The output linear sits *after* the second norm (as in
   MPP), so the attention mixer has no projection of its own. The space block's feed-forward
   is ``ffn``, a name in ``jaxfm.nn.trunk.FFNS`` (``mlp``: MPP's GELU MLP; ``moe``: a mixture
   of experts; ``none``) with the ``mlp`` / ``moe`` sub-configs.
4. Only the last frame's tokens are decoded (MPP decodes all and keeps the last; the ops are
   per frame, so this is the same result for a T-th of the cost) by the hMLP de-stem whose
   output kernel is gathered by field ids.
5. ``delta=False`` (MPP): the decoded frame *is* the next state, in RevIN units.
   ``delta=True``: next = last input frame + decoded increment, with a zero-initialised output
   kernel so the untrained model is the persistence baseline (at small scale the full-state head
   loses to persistence and the delta head beats it: ``docs/surrogate.md``).

Parameter counts. With ``n_fields=12`` our Ti/S/B/L count 4q + D + 3 D depth fewer parameters
than MPP's (q = D/4): MPP's ``RMSInstanceNorm2d`` stores a bias that its forward pass never
uses (its source says so), five in stem/de-stem and three per block. Adding them back gives
MPP's published 7,285,884 (Ti) and 28,979,436 (S) exactly (``tests/models/test_surrogate.py``).

Boundary conditions: ``periodic`` is a bool per spatial axis (H, W), for the batch or per
sample, used only by the position bias. (MPP's ``bcs[0]`` lists the W axis first.)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxfm.nn.field_embed import FieldEmbedding, PatchDestem, PatchStem
from jaxfm.nn.instance_norm import InstanceNorm, RMSInstanceNorm
from jaxfm.nn.layer_stack import REMAT_POLICIES, RematName, block_inputs, block_rngs, run_stack
from jaxfm.nn.mlp import dense
from jaxfm.nn.norms import LayerNorm
from jaxfm.nn.position_bias import RelativePositionBias
from jaxfm.nn.revin import revin_denormalize, revin_normalize
from jaxfm.nn.transformer import LayerScale, MultiHeadAttention, drop_path
from jaxfm.nn.trunk import (
    FFNS,
    MIXERS,
    AttentionConfig,
    FFNName,
    Layer,
    Mamba2Config,
    MambaConfig,
    MixerName,
    MLPConfig,
    MoEConfig,
    TrunkConfig,
    move_legacy_fields,
)


@dataclasses.dataclass(frozen=True)
class AViTConfig:
    """An MPP-style axial vision transformer for multi-physics next-step prediction."""

    dim: int = 192
    """Token width D (the field embedding and stem use D/4)."""
    heads: int = 3
    """Attention heads (head dim = D / heads)."""
    depth: int = 12
    """Number of space-time blocks."""
    n_fields: int = 12
    """Rows of the field embedding (grows with ``expand_fields``). 12 is MPP's vocabulary, so
    MPP checkpoints import and parameter counts match the paper's; it must be at least the
    number of fields the simulators declare (``jaxfm.data.fields.N_FIELDS``, checked by the
    surrogate pipeline before training)."""
    patch_strides: tuple[int, ...] = (4, 2, 2)
    """Strides of the hMLP stem stages; the patch size is their product (16 in MPP)."""
    drop_path: float = 0.2
    """Stochastic depth of the last block, linear from 0 (MPP's build uses 0.2)."""
    layer_scale: float = 1e-6
    """Initial LayerScale of every residual branch."""
    num_buckets: int = 32
    """Relative position buckets (both directions)."""
    max_distance: int = 32
    """Relative distances at or beyond this share the last bucket."""
    periodic_wrap: str = "circular"
    """Relative distance wrap on periodic axes: circular, or mpp (MPP's rule, for imported
    checkpoints; differs only at distance exactly L/2)."""
    delta: bool = False
    """Predict the increment over the last input frame (zero-initialised output) instead of
    the full next state (MPP)."""
    delta_scale: Literal["window", "increment"] = "window"
    """Units of the decoded increment (delta only): window (the window's RevIN std, as the
    input) or increment (the RMS frame-to-frame increment of the window, per sample and
    field: Walrus' asymmetric normalisation, so a slow field and a fast one both ask the
    network for an O(1) output)."""
    patch_jitter: bool = False
    """While training (not deterministic): shift the patch grid by a random offset in
    [0, patch) along each periodic axis of the sample, undone on the output (Walrus), so no
    grid position is special. Bounded axes keep their grid: a shift would move the wall."""
    input_noise: float = 0.0
    """While training: Gaussian noise of this std (RevIN units) added to the input frames
    (DPOT), so the model learns to correct the small errors a rollout feeds back."""
    time_mixer: MixerName = "attention"
    """Mixer along time, a name in jaxfm.nn.trunk.MIXERS: attention (MPP's, with relative
    position bias; heads, attn_impl), mamba or mamba2 (bidirectional unless time_causal; the
    mamba / mamba2 sub-configs)."""
    space_mixer: MixerName = "attention"
    """Mixer along each spatial axis (bidirectional), a name in jaxfm.nn.trunk.MIXERS."""
    ffn: FFNName = "mlp"
    """Feed-forward of the space blocks, a name in jaxfm.nn.trunk.FFNS: mlp (MPP's), moe
    (mixture of experts) or none; its settings are the sub-config of the same name."""
    time_causal: bool = False
    """Causal mask along time (MPP: bidirectional)."""
    attn_impl: str = "auto"
    """Attention implementation passed to jaxfm.nn.attention (auto, xla, cudnn, ...)."""
    scan_layers: bool = False
    """Run the blocks as one scanned loop, traced and compiled once, instead of unrolled; same
    parameters and checkpoints either way (jaxfm.nn.layer_stack). Off by default: on CPU it
    shortens the compile of deep stacks (depth 24) but slows the step and adds two copies of
    the blocks' parameters (results/bench_surrogate_layers, results/bench_surrogate_depth)."""
    remat: RematName = "none"
    """Rematerialisation of each block in the backward pass: none, full, dots or
    dots_no_batch (jaxfm.nn.layer_stack)."""
    mlp: MLPConfig = MLPConfig()
    """Dense feed-forward of the space blocks (ffn = mlp; MPP: ratio 4, GELU)."""
    moe: MoEConfig = MoEConfig()
    """Mixture-of-experts feed-forward of the space blocks (ffn = moe)."""
    mamba: MambaConfig = MambaConfig()
    """Mamba mixer settings (time_mixer or space_mixer = mamba)."""
    mamba2: Mamba2Config = Mamba2Config()
    """Mamba-2 (SSD) mixer settings (time_mixer or space_mixer = mamba2)."""

    @classmethod
    def migrate_dict(cls, data: dict) -> dict:
        """Reads configs saved before ``ffn`` and the sub-configs (``space_mixer="moe"`` was
        attention + the MoE feed-forward; ``mlp_ratio`` moved into ``mlp``)."""
        data = move_legacy_fields(data, {"mlp_ratio": (("mlp", "mlp_ratio"),)})
        if data.get("space_mixer") == "moe":
            data = {**data, "space_mixer": "attention", "ffn": data.get("ffn", "moe")}
        if data.get("time_mixer") == "moe":
            data = {**data, "time_mixer": "attention"}
        return data

    def trunk_view(self, mixer: str, *, ffn: str, causal: bool) -> TrunkConfig:
        """The :class:`TrunkConfig` the registries build this model's modules from."""
        return TrunkConfig(
            mixer=mixer,
            ffn=ffn,
            depth=self.depth,
            dim=self.dim,
            causal=causal,
            attention=AttentionConfig(heads=self.heads, attn_impl=self.attn_impl),
            mamba=self.mamba,
            mamba2=self.mamba2,
            mlp=self.mlp,
            moe=self.moe,
        )

    @property
    def patch(self) -> int:
        """Patch size = product of the stem strides."""
        return int(np.prod(self.patch_strides))

    def validate(self) -> list[tuple[str, str]]:
        """(key, problem) of every setting the model cannot be built with."""
        bad = []
        if self.dim < 4 or self.dim % 4:
            bad.append(("dim", f"must be a positive multiple of 4, got {self.dim}"))
        if self.heads < 1 or self.dim % max(self.heads, 1):
            bad.append(("heads", f"{self.heads} does not divide dim {self.dim}"))
        if self.depth < 1:
            bad.append(("depth", f"must be >= 1, got {self.depth}"))
        if not self.patch_strides or min(self.patch_strides) < 1:
            bad.append(("patch_strides", f"must be >= 1 each, got {self.patch_strides}"))
        if self.input_noise < 0:
            bad.append(("input_noise", f"must be >= 0, got {self.input_noise}"))
        if self.remat not in REMAT_POLICIES:
            bad.append(("remat", f"choose one of {sorted(REMAT_POLICIES)}, got {self.remat!r}"))
        if self.delta_scale not in ("window", "increment"):
            bad.append(("delta_scale", f"choose window or increment, got {self.delta_scale!r}"))
        return bad


def _preset(dim, heads, depth, **kw) -> AViTConfig:
    return AViTConfig(dim=dim, heads=heads, depth=depth, **kw)


PRESETS: dict[str, AViTConfig] = {
    # MPP's published sizes (config/mpp_avit_{ti,s,b,L}_config.yaml), patch 16.
    "Ti": _preset(192, 3, 12),
    "S": _preset(384, 6, 12),
    "B": _preset(768, 12, 12),
    "L": _preset(1024, 16, 24),
    # CPU sizes: patch 8 (strides 2, 2, 2) so a 64x64 grid gives 8x8 tokens; delta head.
    "tiny": _preset(64, 2, 4, patch_strides=(2, 2, 2), drop_path=0.0, delta=True),
    "smoke": _preset(32, 2, 1, patch_strides=(2, 2, 2), drop_path=0.0, delta=True),
    # `make demo`: patch 2 on a 16x16 grid (8x8 tokens).
    "demo": _preset(64, 2, 2, patch_strides=(2,), drop_path=0.0, delta=True),
}


def avit_config(name: str, **overrides) -> AViTConfig:
    """The preset ``name`` (Ti, S, B, L, tiny, smoke) with field ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown AViT preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def mpp_unused_params(cfg: AViTConfig) -> int:
    """Parameters MPP stores but never uses (RMSInstanceNorm2d biases); see module doc."""
    q = cfg.dim // 4
    n_stem_norms = len(cfg.patch_strides)
    return q * (n_stem_norms - 1) + cfg.dim + q * (n_stem_norms - 1) + 3 * cfg.dim * cfg.depth


class _Identity(nnx.Module):
    def __call__(self, x):
        return x


class AxisAttention(MultiHeadAttention):
    """Attention along one axis without output projection (the block projects after a norm).

    The shared :class:`MultiHeadAttention` with MPP's QK-norm (LayerNorm with bias, eps 1e-5,
    over the head dim) and its output projection replaced by the identity.
    """

    def __init__(self, dim: int, heads: int, *, causal: bool, impl: str, rngs: nnx.Rngs):
        """Args: dim, heads: width and heads; causal: mask; impl: attention backend."""
        super().__init__(dim, heads, qk_norm=True, causal=causal, impl=impl, rngs=rngs)
        self.q_norm = LayerNorm(self.head_dim, eps=1e-5)
        self.k_norm = LayerNorm(self.head_dim, eps=1e-5)
        self.out = _Identity()


def _axis_attention(cfg: TrunkConfig, layer: Layer, rngs: nnx.Rngs) -> nnx.Module:
    a = cfg.attention
    return AxisAttention(cfg.dim, a.heads, causal=cfg.causal, impl=a.attn_impl, rngs=rngs)


# The trunk registry, with MPP's attention (no output projection, relative bias) for "attention".
AXIS_MIXERS = {**MIXERS, "attention": _axis_attention}


def build_axis_mixer(
    name: str,
    cfg: AViTConfig,
    *,
    causal: bool,
    ffn: str = "none",
    index: int = 0,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """The mixer ``name`` of block ``index``, with call shape (B, L, D) -> (B, L, D); ``ffn``
    is the feed-forward after it in the same block (its residual branch counts in Mamba's
    output-projection init scaling)."""
    if name not in AXIS_MIXERS:
        raise ValueError(f"unknown AViT mixer {name!r}; choose one of {sorted(AXIS_MIXERS)}")
    tcfg = cfg.trunk_view(name, ffn=ffn, causal=causal)
    return AXIS_MIXERS[name](tcfg, Layer(index, cfg.depth), rngs)


def build_space_ffn(cfg: AViTConfig, *, index: int = 0, rngs: nnx.Rngs) -> nnx.Module | None:
    """The space block's feed-forward ``cfg.ffn`` from ``jaxfm.nn.trunk.FFNS``, (..., D) ->
    (..., D), or None (``ffn="none"``).

    ``mlp`` with the default sub-config is MPP's GELU MLP (4x); ``moe`` is a top-k mixture
    of experts (defaults 8 experts, top 2, hidden ``mlp.mlp_ratio / top_k`` per expert so
    active parameters match the dense MLP) that records its balance and z losses with
    ``record_aux_loss``.
    """
    if cfg.ffn not in FFNS:
        raise ValueError(f"unknown AViT ffn {cfg.ffn!r}; choose one of {sorted(FFNS)}")
    tcfg = cfg.trunk_view(cfg.space_mixer, ffn=cfg.ffn, causal=False)
    return FFNS[cfg.ffn](tcfg, Layer(index, cfg.depth), rngs)


def _relative_bias(cfg: AViTConfig, mixer: nnx.Module, rngs: nnx.Rngs):
    """MPP's T5-style relative position bias, for an attention mixer only (None otherwise)."""
    if not isinstance(mixer, AxisAttention):
        return None
    return RelativePositionBias(
        cfg.heads,
        num_buckets=cfg.num_buckets,
        max_distance=cfg.max_distance,
        wrap=cfg.periodic_wrap,
        rngs=rngs,
    )


class TimeBlock(nnx.Module):
    """Mixing along time for every spatial token, (B, T, h, w, D) -> same."""

    def __init__(self, cfg: AViTConfig, drop_rate: float, *, index: int = 0, rngs: nnx.Rngs):
        self.norm1, self.norm2 = InstanceNorm(cfg.dim), InstanceNorm(cfg.dim)
        self.mixer = build_axis_mixer(
            cfg.time_mixer, cfg, causal=cfg.time_causal, index=index, rngs=rngs
        )
        self.rel_bias = _relative_bias(cfg, self.mixer, rngs)
        self.proj = dense(cfg.dim, cfg.dim, ("embed", "embed"), rngs)
        self.ls = LayerScale(cfg.dim, cfg.layer_scale)
        self.drop_rate = drop_rate

    def __call__(
        self, x, *, deterministic: bool = True, rngs: nnx.Rngs | None = None, drop_rate=None
    ):
        """``drop_rate`` overrides the stored stochastic-depth rate (a scanned stack passes it
        per block)."""
        rate = self.drop_rate if drop_rate is None else drop_rate
        b, t, h, w, d = x.shape
        y = self.norm1(x.reshape(b * t, h, w, d)).reshape(b, t, h, w, d)
        y = jnp.moveaxis(y, 1, 3).reshape(b * h * w, t, d)
        kw = {} if self.rel_bias is None else {"bias": self.rel_bias(t)}
        y = self.mixer(y, deterministic=deterministic, rngs=rngs, **kw)
        y = jnp.moveaxis(y.reshape(b, h, w, t, d), 3, 1).reshape(b * t, h, w, d)
        y = self.ls(self.proj(self.norm2(y))).reshape(b, t, h, w, d)
        return x + drop_path(y, rate, deterministic=deterministic, rngs=rngs)


class SpaceBlock(nnx.Module):
    """Axial mixing along H and W with shared weights, then the MLP; (N, h, w, D) -> same."""

    def __init__(self, cfg: AViTConfig, drop_rate: float, *, index: int = 0, rngs: nnx.Rngs):
        d = cfg.dim
        self.norm1, self.norm2 = RMSInstanceNorm(d), RMSInstanceNorm(d)
        self.mixer = build_axis_mixer(
            cfg.space_mixer, cfg, causal=False, ffn=cfg.ffn, index=index, rngs=rngs
        )
        self.rel_bias = _relative_bias(cfg, self.mixer, rngs)
        self.proj = dense(d, d, ("embed", "embed"), rngs)
        self.ls_mix = LayerScale(d, cfg.layer_scale)
        self.mlp = build_space_ffn(cfg, index=index, rngs=rngs)
        if self.mlp is not None:
            self.mlp_norm = RMSInstanceNorm(d)
            self.ls_mlp = LayerScale(d, cfg.layer_scale)
        self.drop_rate = drop_rate

    def _mix(self, y, axis_len: int, periodic, deterministic, rngs):
        kw = {}
        if self.rel_bias is not None:
            bias = self.rel_bias(axis_len, periodic)  # (1 or B, heads, L, L)
            # sequences are folded batch-major, (B, T, other axis) -> rows: repeat per sample
            kw["bias"] = jnp.repeat(bias, y.shape[0] // bias.shape[0], axis=0)
        return self.mixer(y, deterministic=deterministic, rngs=rngs, **kw)

    def __call__(
        self,
        x,
        periodic,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        drop_rate=None,
    ):
        """``drop_rate`` overrides the stored stochastic-depth rate."""
        rate = self.drop_rate if drop_rate is None else drop_rate
        n, h, w, d = x.shape
        y = self.norm1(x)
        along_w = self._mix(y.reshape(n * h, w, d), w, periodic[..., 1], deterministic, rngs)
        yt = jnp.swapaxes(y, 1, 2).reshape(n * w, h, d)
        along_h = self._mix(yt, h, periodic[..., 0], deterministic, rngs)
        mixed = along_w.reshape(n, h, w, d) + jnp.swapaxes(along_h.reshape(n, w, h, d), 1, 2)
        y = self.ls_mix(self.proj(self.norm2(mixed / 2)))
        x = x + drop_path(y, rate, deterministic=deterministic, rngs=rngs)
        if self.mlp is None:
            return x
        y = self.ls_mlp(self.mlp_norm(self.mlp(x)))
        return x + drop_path(y, rate, deterministic=deterministic, rngs=rngs)


class SpaceTimeBlock(nnx.Module):
    """Time block then space block (MPP ``SpaceTimeBlock``), (B, T, h, w, D) -> same."""

    def __init__(self, cfg: AViTConfig, drop_rate: float, *, index: int = 0, rngs: nnx.Rngs):
        self.time = TimeBlock(cfg, drop_rate, index=index, rngs=rngs)
        self.space = SpaceBlock(cfg, drop_rate, index=index, rngs=rngs)

    def __call__(
        self,
        x,
        periodic,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        drop_rate=None,
    ):
        """``drop_rate`` overrides the stored stochastic-depth rate of both halves."""
        kw = dict(deterministic=deterministic, rngs=rngs, drop_rate=drop_rate)
        x = self.time(x, **kw)
        b, t, h, w, d = x.shape
        x = self.space(x.reshape(b * t, h, w, d), periodic, **kw)
        return x.reshape(b, t, h, w, d)


class AViT(nnx.Module):
    """Multi-physics next-step surrogate; see the module docstring for the design."""

    def __init__(self, cfg: AViTConfig, *, rngs: nnx.Rngs):
        """Args: cfg: architecture; rngs: parameter initialisation."""
        if cfg.dim % 4 or cfg.dim % cfg.heads:
            raise ValueError(f"AViT dim={cfg.dim} must be divisible by 4 and heads={cfg.heads}")
        self.cfg = cfg
        self.fields = FieldEmbedding(cfg.n_fields, cfg.dim // 4, rngs=rngs)
        self.stem = PatchStem(cfg.dim, strides=cfg.patch_strides, rngs=rngs)
        # Stochastic depth linear from 0 to cfg.drop_path, passed to the blocks as data at
        # call time, so their static settings match and the stack can scan.
        self.drop_rates = tuple(float(r) for r in np.linspace(0.0, cfg.drop_path, cfg.depth))
        self.blocks = nnx.List(
            [SpaceTimeBlock(cfg, 0.0, index=i, rngs=rngs) for i in range(cfg.depth)]
        )
        self.destem = PatchDestem(
            cfg.dim, cfg.n_fields, strides=cfg.patch_strides, zero_init_output=cfg.delta, rngs=rngs
        )

    @property
    def n_fields(self) -> int:
        """Current vocabulary size."""
        return self.fields.n_fields

    def expand_fields(self, extra: int, *, rngs: nnx.Rngs) -> None:
        """Appends ``extra`` vocabulary entries (input rows, output kernels); old ones kept."""
        if extra < 1:
            raise ValueError(f"expand_fields needs extra >= 1, got {extra}")
        self.fields.expand(extra, rngs=rngs)
        self.destem.expand(extra, rngs=rngs, zero_init=self.cfg.delta)

    def __call__(
        self,
        x: Float[Array, "b t h w c"],
        field_ids: jax.Array,
        *,
        periodic=(False, False),
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b h w c"]:
        """Predicts the state after the last of the T input frames.

        Args:
          x: input window in physical units.
          field_ids: vocabulary id of each of the C fields (< 0: padding channel).
          periodic: per spatial axis (H, W): a pair of bools for the batch, or a bool array
            of shape (2,) or (B, 2) (one pair per sample).
          deterministic: disable stochastic depth.
          rngs: needs a ``dropout`` stream when not deterministic.
        """
        if x.ndim != 5:
            raise ValueError(f"AViT expects x of shape (B, T, H, W, C), got {x.shape}")
        b, t, hh, ww, _ = x.shape
        if hh % self.cfg.patch or ww % self.cfg.patch:
            raise ValueError(f"grid {(hh, ww)} is not divisible by patch {self.cfg.patch}")
        periodic = jnp.asarray(periodic, bool)
        if periodic.shape not in ((2,), (b, 2)):
            raise ValueError(f"periodic must have shape (2,) or ({b}, 2), got {periodic.shape}")
        xn, stats = revin_normalize(x)
        training = not deterministic and rngs is not None
        if training and self.cfg.input_noise > 0:
            xn = xn + self.cfg.input_noise * jax.random.normal(rngs.dropout(), xn.shape, xn.dtype)
        shift = None
        if training and self.cfg.patch_jitter:
            shift = jitter_shifts(rngs.dropout(), periodic, b, self.cfg.patch)
        xin = xn if shift is None else roll_grid(xn, shift)
        e = self.fields(xin, field_ids)  # (B, T, H, W, D/4)
        tok = self.stem(e.reshape(b * t, hh, ww, e.shape[-1]))
        tok = tok.reshape(b, t, *tok.shape[1:])

        def step(block, h, extra):
            return block(
                h,
                periodic,
                deterministic=deterministic,
                rngs=block_rngs(extra),
                drop_rate=extra["drop_rate"],
            )

        per_block = block_inputs(
            self.blocks, self.drop_rates, deterministic=deterministic, rngs=rngs
        )
        tok = run_stack(
            self.blocks, tok, step, per_block, scan=self.cfg.scan_layers, remat=self.cfg.remat
        )
        out = self.destem(tok[:, -1], field_ids)  # (B, H, W, C) in RevIN units
        if shift is not None:
            out = roll_grid(out, -shift)
        if self.cfg.delta:
            if self.cfg.delta_scale == "increment":
                out = out * increment_rms(xn)
            elif self.cfg.delta_scale != "window":
                raise ValueError(
                    f"unknown delta_scale {self.cfg.delta_scale!r}; choose window or increment"
                )
            out = xn[:, -1] + out
        return revin_denormalize(out, stats)


def increment_rms(xn: jax.Array, eps: float = 1e-4) -> jax.Array:
    """(B, 1, 1, C) RMS of the frame-to-frame increments of the window ``xn`` (B, T, H, W, C)
    per sample and field, without gradient; ``eps`` keeps a frozen field's scale finite.

    A one-frame window has no increment: its scale is 1 (the window's own units)."""
    if xn.shape[1] < 2:
        return jnp.ones((xn.shape[0], 1, 1, xn.shape[-1]), xn.dtype)
    d = jax.lax.stop_gradient(jnp.diff(xn.astype(jnp.float32), axis=1))
    return (jnp.sqrt(jnp.mean(d * d, axis=(1, 2, 3))) + eps)[:, None, None, :].astype(xn.dtype)


def jitter_shifts(key: jax.Array, periodic: jax.Array, batch: int, patch: int) -> jax.Array:
    """(B, 2) int32 random offsets in [0, patch) per sample, zero on bounded axes."""
    s = jax.random.randint(key, (batch, 2), 0, patch)
    return jnp.where(jnp.broadcast_to(periodic, (batch, 2)), s, 0).astype(jnp.int32)


def roll_grid(x: jax.Array, shift: jax.Array) -> jax.Array:
    """Rolls each sample of ``x`` (B, ..., H, W, C) by its ``shift`` (B, 2) along H and W."""

    def one(xi, si):
        return jnp.roll(xi, (si[0], si[1]), axis=(-3, -2))

    return jax.vmap(one)(x, shift)
