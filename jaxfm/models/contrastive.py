"""AstroCLIP-style cross-modal model: image and spectrum encoders, pooling heads, projections.

Design note (Parker et al. 2024, arXiv 2310.03024; Radford et al. 2021). Each modality has a
backbone that returns tokens (ViT or ResNet for images, SpecFormer for spectra) and a
:class:`CrossAttentionPool` head: one learned query (N(0, 1), AstroCLIP's ``ImageHead`` /
``SpectrumHead``, big_vision's MAPHead) attends over the backbone tokens through the shared
:class:`jaxfm.nn.transformer.MultiHeadAttention` (``context=``), then LayerNorm and an MLP
(``residual=True`` adds the pooled vector back, as AstroCLIP's spectrum head does). Heads output
*unnormalised* (B, embed_dim) vectors; the losses L2-normalise them.

The temperature lives in the model: ``log_scale`` (an ``nnx.Param`` when learned, a plain
``nnx.Variable`` when fixed, e.g. AstroCLIP v2's s = 15.5), and ``logit_bias`` for SigLIP.

Frozen backbones (AstroCLIP v2 trains only the heads): :func:`trainable_filter` gives one NNX
filter used both for the gradient (``nnx.DiffState``) and the optimizer (``wrt=``); the model
also stops gradients at the backbone outputs so no backbone backward pass is computed.

Shapes: images (B, H, W, 3), spectra (B, L, 1) -> embeddings (B, E) each.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxfm.models.resnet import ResNet, ResNetConfig
from jaxfm.models.specformer import SpecFormer, SpecFormerConfig
from jaxfm.models.vit import ViT, ViTConfig
from jaxfm.nn.mlp import MLP
from jaxfm.nn.norms import LayerNorm
from jaxfm.nn.params import param
from jaxfm.nn.transformer import MultiHeadAttention

#: sub-module / variable names that stay trainable when the backbones are frozen.
HEAD_NAMES = ("image_head", "spectrum_head", "log_scale", "logit_bias")


@dataclasses.dataclass(frozen=True)
class ContrastiveConfig:
    """Cross-modal image + spectrum model."""

    image_encoder: Literal["vit", "resnet"] = "vit"
    """Image backbone."""
    vit: ViTConfig = ViTConfig()
    """Image ViT (used when image_encoder = vit)."""
    resnet: ResNetConfig = ResNetConfig()
    """Image ResNet (used when image_encoder = resnet)."""
    spectrum: SpecFormerConfig = SpecFormerConfig()
    """Spectrum SpecFormer."""
    embed_dim: int = 128
    """Shared embedding width E (AstroCLIP v2: 1024)."""
    head_heads: int = 4
    """Heads of the cross-attention pooling."""
    head_mlp_ratio: float = 4.0
    """Hidden width of the head MLP, as a multiple of embed_dim."""
    head_dropout: float = 0.0
    """Dropout inside the head MLP (AstroCLIP: 0.1)."""
    loss: Literal["infonce", "siglip"] = "infonce"
    """Contrastive loss: symmetric InfoNCE or SigLIP sigmoid."""
    learn_scale: bool = True
    """Learn the logit scale (else keep init_scale fixed; AstroCLIP v2: fixed 15.5)."""
    init_scale: float | None = None
    """Initial logit scale (None: 1/0.07 for infonce, 10 for siglip)."""
    init_bias: float = -10.0
    """Initial SigLIP logit bias (big_vision: -10; small batches: about log(1/B))."""
    max_scale: float = 100.0
    """Cap on the logit scale (open_clip)."""
    freeze_backbones: bool = False
    """Train only the pooling heads and the temperature (AstroCLIP v2)."""


class CrossAttentionPool(nnx.Module):
    """Learned-query attention pooling: tokens (B, N, context_dim) -> (B, dim)."""

    def __init__(
        self,
        context_dim: int,
        dim: int,
        *,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        residual: bool = False,
        rngs: nnx.Rngs,
    ):
        self.query = param(
            jax.random.normal(rngs.params(), (1, 1, dim), jnp.float32), (None, None, "embed")
        )
        self.attn = MultiHeadAttention(dim, heads, context_dim=context_dim, rngs=rngs)
        self.norm = LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout, rngs=rngs)
        self.residual = residual

    def __call__(
        self,
        tokens: Float[Array, "b n c"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b d"]:
        q = jnp.broadcast_to(
            self.query[...].astype(tokens.dtype), (tokens.shape[0], 1, self.query.shape[-1])
        )
        x = self.norm(self.attn(q, context=tokens))
        h = self.mlp(x, deterministic=deterministic, rngs=rngs)
        return (x + h if self.residual else h)[:, 0]


class ContrastiveModel(nnx.Module):
    """Image and spectrum towers embedding into one space (unnormalised outputs)."""

    def __init__(self, cfg: ContrastiveConfig, *, rngs: nnx.Rngs):
        if cfg.image_encoder == "vit":
            self.image_encoder = ViT(cfg.vit, rngs=rngs)
        elif cfg.image_encoder == "resnet":
            self.image_encoder = ResNet(cfg.resnet, rngs=rngs)
        else:
            raise ValueError(
                f"ContrastiveConfig.image_encoder={cfg.image_encoder!r}; choose 'vit' or 'resnet'"
            )
        if cfg.loss not in ("infonce", "siglip"):
            raise ValueError(f"ContrastiveConfig.loss={cfg.loss!r}; choose 'infonce' or 'siglip'")
        self.cfg = cfg
        self.spectrum_encoder = SpecFormer(cfg.spectrum, rngs=rngs)
        kw = dict(
            heads=cfg.head_heads, mlp_ratio=cfg.head_mlp_ratio, dropout=cfg.head_dropout, rngs=rngs
        )
        self.image_head = CrossAttentionPool(self.image_encoder.width, cfg.embed_dim, **kw)
        self.spectrum_head = CrossAttentionPool(
            self.spectrum_encoder.width, cfg.embed_dim, residual=True, **kw
        )
        init = cfg.init_scale or (1.0 / 0.07 if cfg.loss == "infonce" else 10.0)
        var = nnx.Param if cfg.learn_scale else nnx.Variable
        self.log_scale = var(jnp.asarray(math.log(init), jnp.float32))
        self.logit_bias = (
            nnx.Param(jnp.asarray(cfg.init_bias, jnp.float32)) if (cfg.loss == "siglip") else None
        )

    def _backbone(self, tokens: jax.Array) -> jax.Array:
        return jax.lax.stop_gradient(tokens) if self.cfg.freeze_backbones else tokens

    def embed_image(
        self,
        images: Float[Array, "b h w c"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b e"]:
        """Unnormalised image embeddings (B, E)."""
        tok = self._backbone(self.image_encoder(images, deterministic=deterministic, rngs=rngs))
        return self.image_head(tok, deterministic=deterministic, rngs=rngs)

    def embed_spectrum(
        self,
        spectra: Float[Array, "b l 1"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b e"]:
        """Unnormalised spectrum embeddings (B, E)."""
        tok = self._backbone(self.spectrum_encoder(spectra, deterministic=deterministic, rngs=rngs))
        return self.spectrum_head(tok, deterministic=deterministic, rngs=rngs)

    def __call__(
        self,
        images: jax.Array,
        spectra: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """(image embeddings, spectrum embeddings), each (B, E)."""
        return (
            self.embed_image(images, deterministic=deterministic, rngs=rngs),
            self.embed_spectrum(spectra, deterministic=deterministic, rngs=rngs),
        )

    def scale(self) -> jax.Array:
        """The logit scale exp(log_scale), capped at ``max_scale``."""
        return jnp.exp(jnp.minimum(self.log_scale[...], math.log(self.cfg.max_scale)))


def trainable_filter(cfg: ContrastiveConfig) -> nnx.filterlib.Filter:
    """The parameters that train: all of them, or only heads + temperature when frozen.

    Use the same filter for ``nnx.Optimizer(model, tx, wrt=...)`` and ``nnx.DiffState``.
    """
    if not cfg.freeze_backbones:
        return nnx.Param
    return nnx.All(nnx.Param, nnx.Any(*[nnx.PathContains(n) for n in HEAD_NAMES]))
