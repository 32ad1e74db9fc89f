"""The feed-forward layer shared by every transformer-style block.

``gelu``: Linear(d, h) -> GELU -> Linear(h, d) (ViT, MPP). ``swiglu``: the gated variant of
Shazeer 2020, (SiLU(x W1) * x W3) W2, with the usual 2/3 hidden width so the parameter count
matches the GELU MLP of the same ``hidden``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.nn.params import partitioned

Activation = Literal["gelu", "swiglu"]


def dense(
    din: int,
    dout: int,
    axes: tuple[str | None, str | None],
    rngs: nnx.Rngs,
    *,
    use_bias: bool = True,
    zero_init: bool = False,
) -> nnx.Linear:
    """A Linear layer whose kernel carries logical axis names ``axes`` for sharding."""
    init = nnx.initializers.zeros_init() if zero_init else nnx.initializers.lecun_normal()
    return nnx.Linear(
        din,
        dout,
        use_bias=use_bias,
        rngs=rngs,
        kernel_init=partitioned(init, axes),
        bias_init=partitioned(nnx.initializers.zeros_init(), (axes[1],)),
    )


class MLP(nnx.Module):
    """Position-wise feed-forward network, (..., dim) -> (..., dim)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        activation: Activation = "gelu",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if activation not in ("gelu", "swiglu"):
            raise ValueError(f"unknown MLP activation {activation!r}; choose 'gelu' or 'swiglu'")
        self.activation = activation
        if activation == "swiglu":
            hidden = max(8, int(2 * hidden / 3) // 8 * 8)
            self.gate = dense(dim, hidden, ("embed", "mlp"), rngs)
        self.up = dense(dim, hidden, ("embed", "mlp"), rngs)
        self.down = dense(hidden, dim, ("mlp", "embed"), rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(
        self, x: jax.Array, *, deterministic: bool = True, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        h = self.up(x)
        if self.activation == "swiglu":
            h = jax.nn.silu(self.gate(x)) * h
        else:
            h = jax.nn.gelu(h, approximate=False)
        h = self.dropout(h, deterministic=deterministic or rngs is None, rngs=rngs)
        return self.down(h).astype(jnp.result_type(x))
