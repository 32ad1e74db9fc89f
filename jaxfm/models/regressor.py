"""A residual MLP regressor: the quickstart model and the engine's test model.

y_hat = x + MLP(x) when ``residual`` (a flow map is close to the identity at small dt, so
the network only learns the increment), else MLP(x). Loss: mean squared error.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from jaxfm.nn.mlp import dense


@dataclasses.dataclass(frozen=True)
class RegressorConfig:
    """Residual MLP regressor."""

    features: int = 3
    """Input and output features."""
    hidden: int = 128
    """Hidden width."""
    depth: int = 3
    """Number of hidden layers."""
    residual: bool = True
    """Predict the increment y - x instead of y."""


class Regressor(nnx.Module):
    """(B, features) -> (B, features)."""

    def __init__(self, cfg: RegressorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dims = [cfg.features] + [cfg.hidden] * cfg.depth
        self.hidden = nnx.List(
            [
                dense(a, b, ("embed", "mlp") if i % 2 == 0 else ("mlp", "embed"), rngs)
                for i, (a, b) in enumerate(zip(dims, dims[1:]))
            ]
        )
        self.out = dense(dims[-1], cfg.features, ("mlp", None), rngs, zero_init=cfg.residual)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for layer in self.hidden:
            h = jax.nn.gelu(layer(h))
        y = self.out(h)
        return x + y if self.cfg.residual else y
