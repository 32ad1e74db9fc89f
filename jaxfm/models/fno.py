"""Fourier neural operator (FNO) baseline for 2-D next-step prediction.

Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021.
Lift the folded input window pointwise to ``width`` channels, apply ``depth`` Fourier layers

    v <- GELU(W v + K v),   K v = IFFT(R . FFT(v)) on the lowest ``modes`` x ``modes`` modes,

and project pointwise to the C fields. R holds complex weights (stored as real and imaginary
float32 parameters) for the positive and negative frequencies of the first axis and the
non-negative ones of the second (real FFT). The Well's FNO baseline uses 16 modes, 4 blocks,
width 128; our CPU presets are smaller.

Shapes: x (B, T, H, W, C) -> (B, H, W, C); see ``jaxfm.models.baseline_io`` for RevIN and delta.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.models.baseline_io import FoldedBaseline
from jaxfm.nn.mlp import dense


@dataclasses.dataclass(frozen=True)
class FNOConfig:
    """A 2-D FNO."""

    n_channels: int = 4
    """Fields C of the target system."""
    n_steps_input: int = 4
    """Input frames T (folded into channels)."""
    width: int = 32
    """Hidden channels."""
    modes: int = 8
    """Fourier modes kept per axis (must be <= H/2 and <= W/2 + 1)."""
    depth: int = 4
    """Fourier layers."""
    delta: bool = True
    """Predict the increment over the last frame (zero-initialised output)."""


class SpectralConv2d(nnx.Module):
    """K v: the lowest Fourier modes times learned complex matrices, (B,H,W,Ci)->(B,H,W,Co)."""

    def __init__(self, cin: int, cout: int, modes: int, *, rngs: nnx.Rngs):
        scale = 1.0 / (cin * cout)  # Li et al.'s initial scale
        shape = (2, modes, modes, cin, cout)  # [positive | negative first-axis freqs]
        self.modes = modes
        self.w_re = nnx.Param(scale * jax.random.uniform(rngs.params(), shape))
        self.w_im = nnx.Param(scale * jax.random.uniform(rngs.params(), shape))

    def __call__(self, v: jax.Array) -> jax.Array:
        b, h, w, _ = v.shape
        m = self.modes
        if m > h // 2 or m > w // 2 + 1:
            raise ValueError(f"FNO modes={m} too many for a {h}x{w} grid")
        f = jnp.fft.rfft2(v.astype(jnp.float32), axes=(1, 2))  # (B, H, W//2+1, Ci)
        wc = self.w_re[...] + 1j * self.w_im[...]
        top = jnp.einsum("bxyi,xyio->bxyo", f[:, :m, :m], wc[0])
        bot = jnp.einsum("bxyi,xyio->bxyo", f[:, -m:, :m], wc[1])
        out = jnp.zeros((b, h, w // 2 + 1, wc.shape[-1]), f.dtype)
        out = out.at[:, :m, :m].set(top).at[:, -m:, :m].set(bot)
        return jnp.fft.irfft2(out, s=(h, w), axes=(1, 2)).astype(v.dtype)


class FNO(FoldedBaseline):
    """FNO surrogate with the AViT call signature (field ids and periodic are ignored)."""

    def __init__(self, cfg: FNOConfig, *, rngs: nnx.Rngs):
        """Args: cfg: architecture; rngs: initialisation."""
        self.cfg = cfg
        cin = cfg.n_channels * cfg.n_steps_input
        self.lift = dense(cin, cfg.width, (None, "embed"), rngs)
        self.spectral = nnx.List(
            [SpectralConv2d(cfg.width, cfg.width, cfg.modes, rngs=rngs) for _ in range(cfg.depth)]
        )
        self.pointwise = nnx.List(
            [dense(cfg.width, cfg.width, ("embed", "embed"), rngs) for _ in range(cfg.depth)]
        )
        self.proj = dense(cfg.width, 2 * cfg.width, ("embed", "mlp"), rngs)
        self.out = dense(2 * cfg.width, cfg.n_channels, ("mlp", None), rngs, zero_init=cfg.delta)

    def _core(self, v):
        v = self.lift(v)
        for i, (k, w) in enumerate(zip(self.spectral, self.pointwise)):
            v = k(v) + w(v)
            if i < len(self.spectral) - 1:
                v = jax.nn.gelu(v)
        return self.out(jax.nn.gelu(self.proj(v)))
