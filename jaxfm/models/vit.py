"""Vision Transformer image encoder on the shared :class:`jaxfm.nn.trunk.Trunk`.

Design note (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"). Non-overlapping
``patch`` x ``patch`` patches are embedded linearly, learned position embeddings are added,
and the trunk (attention + MLP by default; any ``TrunkConfig.mixer`` / ``ffn``) mixes the
tokens. The encoder
returns all patch tokens, (B, N, dim) with N = (size / patch)^2, and no CLS token: the
contrastive heads pool tokens with a learned-query cross attention, as AstroCLIP's image head
does over AstroDINO's patch tokens (Parker et al. 2024).

Shapes: images (B, H, W, C) -> tokens (B, (H/p)(W/p), dim).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxfm.nn.mlp import dense
from jaxfm.nn.params import param
from jaxfm.nn.trunk import Trunk, TrunkConfig


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Image ViT."""

    image_size: int = 32
    """Input side in pixels (square images)."""
    patch: int = 4
    """Patch side in pixels; must divide image_size."""
    channels: int = 3
    """Input bands."""
    trunk: TrunkConfig = TrunkConfig(depth=4, dim=128)
    """The token mixer stack (mixer, ffn, depth, width and the mixer/ffn sub-configs)."""


class ViT(nnx.Module):
    """Patch embedding + learned positions + trunk; returns patch tokens (B, N, dim)."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        if cfg.image_size % cfg.patch:
            raise ValueError(f"ViTConfig.patch={cfg.patch} must divide image_size={cfg.image_size}")
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch) ** 2
        dim = cfg.trunk.dim
        self.embed = dense(cfg.patch * cfg.patch * cfg.channels, dim, (None, "embed"), rngs)
        init = nnx.initializers.truncated_normal(stddev=dim**-0.5)
        self.pos = param(init(rngs.params(), (1, n, dim)), (None, None, "embed"))
        self.trunk = Trunk(cfg.trunk, rngs=rngs)

    def __call__(
        self,
        images: Float[Array, "b h w c"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b n d"]:
        cfg = self.cfg
        b, h, w, c = images.shape
        if (h, w, c) != (cfg.image_size, cfg.image_size, cfg.channels):
            raise ValueError(
                f"ViT expects images (B, {cfg.image_size}, {cfg.image_size}, "
                f"{cfg.channels}); got {images.shape}"
            )
        p = cfg.patch
        x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        x = self.embed(x.reshape(b, (h // p) * (w // p), p * p * c))
        x = x + self.pos[...].astype(x.dtype)
        return self.trunk(x, deterministic=deterministic, rngs=rngs)

    @property
    def width(self) -> int:
        """Token width (the ``context_dim`` of a pooling head)."""
        return self.cfg.trunk.dim


def mean_token(tokens: jax.Array) -> jax.Array:
    """Token average (B, N, D) -> (B, D), the baseline embedding of an encoder."""
    return jnp.mean(tokens.astype(jnp.float32), axis=1)
