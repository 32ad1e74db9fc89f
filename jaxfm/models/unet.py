"""A small U-Net baseline for 2-D next-step prediction.

Ronneberger et al., MICCAI 2015; the PDE variant of Gupta & Brandstetter (2022) and The Well's
``UNetClassic``. Each level: two 3x3 convolutions with GroupNorm and GELU; 2x2 strided
convolution down, 2x2 transposed convolution up, skip connections by concatenation; a final
1x1 convolution to the C fields (zero-initialised for delta prediction).

Shapes: x (B, T, H, W, C) -> (B, H, W, C), H and W divisible by 2**levels; see
``jaxfm.models.baseline_io`` for RevIN and delta.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from jaxfm.models.baseline_io import FoldedBaseline


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """A 2-D U-Net."""

    n_channels: int = 4
    """Fields C of the target system."""
    n_steps_input: int = 4
    """Input frames T (folded into channels)."""
    base: int = 16
    """Channels of the first level (doubled at each level down)."""
    levels: int = 2
    """Down-sampling steps."""
    delta: bool = True
    """Predict the increment over the last frame (zero-initialised output)."""


def _groups(c: int) -> int:
    return max(g for g in (8, 4, 2, 1) if c % g == 0)


class ConvBlock(nnx.Module):
    """Two (3x3 conv -> GroupNorm -> GELU)."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(cin, cout, (3, 3), padding="SAME", rngs=rngs)
        self.n1 = nnx.GroupNorm(cout, num_groups=_groups(cout), rngs=rngs)
        self.c2 = nnx.Conv(cout, cout, (3, 3), padding="SAME", rngs=rngs)
        self.n2 = nnx.GroupNorm(cout, num_groups=_groups(cout), rngs=rngs)

    def __call__(self, x):
        x = jax.nn.gelu(self.n1(self.c1(x)))
        return jax.nn.gelu(self.n2(self.c2(x)))


class UNet(FoldedBaseline):
    """U-Net surrogate with the AViT call signature (field ids and periodic are ignored)."""

    def __init__(self, cfg: UNetConfig, *, rngs: nnx.Rngs):
        """Args: cfg: architecture; rngs: initialisation."""
        self.cfg = cfg
        chans = [cfg.base * 2**i for i in range(cfg.levels + 1)]
        self.inc = ConvBlock(cfg.n_channels * cfg.n_steps_input, chans[0], rngs=rngs)
        self.down = nnx.List(
            [
                nnx.Conv(chans[i], chans[i + 1], (2, 2), strides=2, padding="VALID", rngs=rngs)
                for i in range(cfg.levels)
            ]
        )
        self.enc = nnx.List(
            [ConvBlock(chans[i + 1], chans[i + 1], rngs=rngs) for i in range(cfg.levels)]
        )
        self.up = nnx.List(
            [
                nnx.ConvTranspose(
                    chans[i + 1], chans[i], (2, 2), strides=(2, 2), padding="VALID", rngs=rngs
                )
                for i in reversed(range(cfg.levels))
            ]
        )
        self.dec = nnx.List(
            [ConvBlock(2 * chans[i], chans[i], rngs=rngs) for i in reversed(range(cfg.levels))]
        )
        init = nnx.initializers.zeros_init() if cfg.delta else nnx.initializers.lecun_normal()
        self.out = nnx.Conv(chans[0], cfg.n_channels, (1, 1), kernel_init=init, rngs=rngs)

    def _core(self, x):
        f = 2**self.cfg.levels
        if x.shape[1] % f or x.shape[2] % f:
            raise ValueError(
                f"U-Net with {self.cfg.levels} levels needs H, W divisible by {f}, "
                f"got {x.shape[1:3]}"
            )
        h = self.inc(x)
        skips = [h]
        for down, enc in zip(self.down, self.enc):
            h = enc(down(h))
            skips.append(h)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            h = dec(jax.numpy.concatenate([up(h), skips.pop()], axis=-1))
        return self.out(h)
