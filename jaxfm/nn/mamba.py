"""Mamba-1 mixer: the selective state-space block of Gu & Dao 2023 (arXiv 2312.00752).

Forward (``mamba_ssm/modules/mamba_simple.py::Mamba``; E = expand, R = dt_rank, N = d_state):

    x, z = split(in_proj(h))                    (B, L, 2·E·d) -> two (B, L, E·d)
    x = silu(causal_depthwise_conv(x))          kernel d_conv, with bias
    delta, B, C = split(x_proj(x))              R, N, N
    dt = softplus(dt_proj(delta) + dt_bias)     float32
    y = selective_scan(x, dt, A = -exp(A_log), B, C, D)
    out = out_proj(y * silu(z))                 (B, L, d)

Initialisation follows the reference: ``A_log = log(1..N)`` per channel, ``D = 1``,
``dt_proj`` weight U(±R^-1/2), dt bias the inverse softplus of dt log-uniform in
[dt_min, dt_max] floored at ``dt_floor``; ``out_proj`` scaled by 1/sqrt(n_residual·n_layer)
(the GPT-2 "prenorm residual" rescaling). ``A_log``, ``D`` and the dt bias are
:class:`SSMParam` (a ``nnx.Param`` subclass) so the engine can keep them in float32 and out
of weight decay; the block computes softplus, exp and the scan in float32 in any case.

Padding: ``mask`` (B, L), True = real token. Masked positions get x = 0 before the
convolution and dt = 0 in the scan, so they neither change the state nor leak into the
convolution window; a padded sequence then gives the same outputs at its real tokens as the
unpadded one, wherever the padding sits (needed by the bidirectional wrapper, which flips).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float

from jaxfm.nn.mlp import dense
from jaxfm.nn.params import Fp32Param, param, partitioned
from jaxfm.nn.scan import METHODS, ScanMethod, selective_scan


class SSMParam(Fp32Param):
    """A state-space parameter (A_log, D, dt bias): keep in float32, exclude from decay."""


def token_mask(mask: jax.Array | None, batch: int, length: int) -> jax.Array | None:
    """Normalises a padding mask to (B, L) bool; accepts (B, L) or a key mask (B, 1, 1, L)."""
    if mask is None:
        return None
    if mask.ndim == 4 and mask.shape[1] == mask.shape[2] == 1:
        mask = mask[:, 0, 0, :]
    if mask.shape != (batch, length):
        raise ValueError(
            f"state-space mixers need a (batch, length) = {(batch, length)} "
            f"token mask; got shape {mask.shape}"
        )
    return mask.astype(bool)


def dt_bias_init(
    key: jax.Array, shape: tuple[int, ...], dt_min: float, dt_max: float, floor: float
) -> jax.Array:
    """Inverse softplus of dt ~ log-uniform[dt_min, dt_max] (floored), float32."""
    u = jax.random.uniform(key, shape, jnp.float32)
    dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = jnp.maximum(dt, floor)
    return dt + jnp.log(-jnp.expm1(-dt))  # softplus^-1(dt) = log(exp(dt) - 1)


def causal_depthwise_conv(channels: int, kernel: int, use_bias: bool, rngs: nnx.Rngs) -> nnx.Conv:
    """Depthwise causal 1-D convolution; PyTorch's default init U(±1/sqrt(kernel))."""
    return nnx.Conv(
        channels,
        channels,
        kernel_size=(kernel,),
        feature_group_count=channels,
        padding="CAUSAL",
        use_bias=use_bias,
        rngs=rngs,
        kernel_init=partitioned(
            nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform"), (None, None, "mlp")
        ),
        bias_init=partitioned(nnx.initializers.zeros_init(), ("mlp",)),
    )


def scaled_out_proj(
    din: int, dout: int, n_residual_layers: int, rngs: nnx.Rngs, use_bias: bool = False
) -> nnx.Linear:
    """Output projection with lecun-normal init divided by sqrt(n_residual_layers)."""
    init = nnx.initializers.variance_scaling(1.0 / n_residual_layers, "fan_in", "truncated_normal")
    return nnx.Linear(
        din,
        dout,
        use_bias=use_bias,
        rngs=rngs,
        kernel_init=partitioned(init, ("mlp", "embed")),
        bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)),
    )


def _uniform_pm(bound: float):
    """Initializer U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Mamba(nnx.Module):
    """Mamba-1 mixer, (B, L, dim) -> (B, L, dim), causal.

    Args:
      dim: model width d.
      d_state: state size N per channel.
      d_conv: causal convolution width.
      expand: inner width factor E (inner width E·d).
      dt_rank: rank R of the dt projection (None: ceil(d/16)).
      dt_min, dt_max, dt_floor: range of the initial step sizes.
      scan: selective-scan backend (``linear``, ``assoc``, ``chunked``).
      chunk: chunk length of the chunked scan.
      n_layer: depth of the trunk, for the output-projection rescaling.
      n_residual: residual branches per layer (1 without MLP, 2 with).
      conv_bias, bias: biases of the convolution and of the in/out projections.
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        dim: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_floor: float = 1e-4,
        scan: ScanMethod = "chunked",
        chunk: int = 64,
        n_layer: int = 1,
        n_residual: int = 1,
        conv_bias: bool = True,
        bias: bool = False,
        rngs: nnx.Rngs,
    ):
        if scan not in METHODS:
            raise ValueError(f"unknown scan method {scan!r}; choose one of {METHODS}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        if chunk < 1:
            raise ValueError(f"Mamba: chunk must be >= 1, got {chunk}")
        inner = expand * dim
        self.inner, self.d_state = inner, d_state
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.scan, self.chunk = scan, chunk
        self.n_layer, self.n_residual = n_layer, n_residual
        self.in_proj = dense(dim, 2 * inner, ("embed", "mlp"), rngs, use_bias=bias)
        self.conv = causal_depthwise_conv(inner, d_conv, conv_bias, rngs)
        self.x_proj = dense(inner, self.dt_rank + 2 * d_state, ("mlp", None), rngs, use_bias=False)
        bound = self.dt_rank**-0.5
        self.dt_proj = nnx.Linear(
            self.dt_rank,
            inner,
            use_bias=False,
            rngs=rngs,
            kernel_init=partitioned(_uniform_pm(bound), (None, "mlp")),
        )
        self.dt_bias = param(
            dt_bias_init(rngs.params(), (inner,), dt_min, dt_max, dt_floor), ("mlp",), kind=SSMParam
        )
        a = np.tile(np.log(np.arange(1, d_state + 1, dtype=np.float32)), (inner, 1))
        self.A_log = param(jnp.asarray(a), ("mlp", None), kind=SSMParam)
        self.D = param(jnp.ones((inner,), jnp.float32), ("mlp",), kind=SSMParam)
        self.out_proj = scaled_out_proj(inner, dim, n_residual * n_layer, rngs, use_bias=bias)

    def __call__(
        self,
        x: Float[Array, "b l d"],
        *,
        mask: Bool[Array, "b l"] | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b l d"]:
        """Applies the mixer; ``mask`` (B, L) marks real tokens (see module docstring)."""
        del deterministic, rngs  # no dropout inside the mixer
        b, l, _ = x.shape
        mask = token_mask(mask, b, l)
        xz = self.in_proj(x)
        u, z = jnp.split(xz, 2, axis=-1)
        if mask is not None:
            u = jnp.where(mask[..., None], u, jnp.zeros_like(u))
        u = jax.nn.silu(self.conv(u))
        delta, bm, cm = jnp.split(
            self.x_proj(u), [self.dt_rank, self.dt_rank + self.d_state], axis=-1
        )
        f32 = jnp.float32
        dt = jax.nn.softplus(
            self.dt_proj(delta).astype(f32) + self.dt_bias[...].astype(f32)[None, None]
        )
        if mask is not None:
            dt = jnp.where(mask[..., None], dt, jnp.zeros_like(dt))
        a = -jnp.exp(self.A_log[...].astype(f32))
        y, _ = selective_scan(
            u, dt, a, bm, cm, self.D[...].astype(f32), method=self.scan, chunk=self.chunk
        )
        y = y * jax.nn.silu(z)
        return self.out_proj(y).astype(x.dtype)
