"""Mean-squared-error regression of ``batch["y"]`` from ``batch["x"]`` with a :class:`Regressor`.

The evaluation also reports ``persistence_mse`` (predicting y = x), the floor any flow-map
regressor must beat.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxfm.models.regressor import Regressor, RegressorConfig


class RegressionTask:
    """Mean-squared-error regression of ``batch["y"]`` from ``batch["x"]``."""

    def __init__(self, cfg: RegressorConfig):
        self.cfg = cfg

    def build_model(self, rngs: nnx.Rngs) -> Regressor:
        return Regressor(self.cfg, rngs=rngs)

    def loss(self, model, batch, rngs):
        del rngs
        err = model(batch["x"]).astype(jnp.float32) - batch["y"].astype(jnp.float32)
        mse = jnp.mean(err**2)
        return mse, {"mse": mse}

    def eval_metrics(self, model, batch):
        x, y = batch["x"].astype(jnp.float32), batch["y"].astype(jnp.float32)
        mse = jnp.mean((model(batch["x"]).astype(jnp.float32) - y) ** 2)
        return {"loss": mse, "mse": mse, "persistence_mse": jnp.mean((x - y) ** 2)}
