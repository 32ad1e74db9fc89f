"""A small ResNet image encoder (He et al. 2016), the convolutional alternative to the ViT.

Design note. AstroCLIP v1 aligned a ResNet-50 (Stein et al. 2021 MoCo-v2) image encoder; on
32x32 synthetic cut-outs a few basic blocks suffice. GroupNorm replaces BatchNorm so the
encoder has no running statistics (no mutable state in the train step, identical behaviour
in training and evaluation, batch-size independent under data parallelism). Each stage
halves the resolution (stride-2 first block) and the output feature map is flattened to
tokens so the same cross-attention pooling head serves both image encoders.

Shapes: images (B, H, W, C) -> tokens (B, (H / 2^(stages-1))^2, widths[-1]).
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx
from jaxtyping import Array, Float

from jaxfm.nn.params import partitioned


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Small ResNet."""

    widths: tuple[int, ...] = (32, 64, 128)
    """Channels of each stage; every stage after the first downsamples by 2."""
    blocks: int = 1
    """Basic residual blocks per stage."""
    channels: int = 3
    """Input bands."""
    groups: int = 8
    """GroupNorm groups (must divide every width)."""


def _conv(cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding="SAME",
        use_bias=False,
        kernel_init=partitioned(nnx.initializers.he_normal(), (None, None, None, "embed")),
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    """conv3x3-GN-ReLU-conv3x3-GN + (projected) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, rngs: nnx.Rngs):
        self.conv1, self.conv2 = _conv(cin, cout, 3, stride, rngs), _conv(cout, cout, 3, 1, rngs)
        self.gn1 = nnx.GroupNorm(cout, num_groups=groups, rngs=rngs)
        # zero-init the last scale so each block starts as identity (Goyal et al. 2017)
        self.gn2 = nnx.GroupNorm(
            cout, num_groups=groups, scale_init=nnx.initializers.zeros_init(), rngs=rngs
        )
        self.proj = _conv(cin, cout, 1, stride, rngs) if (stride != 1 or cin != cout) else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.gn1(self.conv1(x)))
        h = self.gn2(self.conv2(h))
        return nnx.relu(h + (self.proj(x) if self.proj is not None else x))


class ResNet(nnx.Module):
    """Stem conv + stages of basic blocks; returns the final feature map as tokens."""

    def __init__(self, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        bad = [w for w in cfg.widths if w % cfg.groups]
        if bad:
            raise ValueError(f"ResNetConfig.groups={cfg.groups} must divide widths {bad}")
        self.cfg = cfg
        self.stem = _conv(cfg.channels, cfg.widths[0], 3, 1, rngs)
        self.stem_norm = nnx.GroupNorm(cfg.widths[0], num_groups=cfg.groups, rngs=rngs)
        blocks, cin = [], cfg.widths[0]
        for s, w in enumerate(cfg.widths):
            for i in range(cfg.blocks):
                blocks.append(BasicBlock(cin, w, 2 if (s > 0 and i == 0) else 1, cfg.groups, rngs))
                cin = w
        self.blocks = nnx.List(blocks)

    def __call__(
        self,
        images: Float[Array, "b h w c"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b n d"]:
        del deterministic, rngs  # no dropout
        x = nnx.relu(self.stem_norm(self.stem(images)))
        for block in self.blocks:
            x = block(x)
        b, h, w, c = x.shape
        return x.reshape(b, h * w, c)

    @property
    def width(self) -> int:
        """Token width (the ``context_dim`` of a pooling head)."""
        return self.cfg.widths[-1]
