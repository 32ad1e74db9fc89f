"""Training the xVal language model: loss, answer scoring and the engine tasks.

Loss (next-token, position t predicts token t+1): cross-entropy on the token head plus
``num_loss_weight`` x MSE of the number head at positions whose *target* is [NUM], both averaged
over ``loss_mask`` (the mean is guarded against batches without [NUM] targets).
:class:`SideBySideTask` trains several encodings in one run on the same samples, so a
comparison of encodings differs in the encoding alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxfm.models.xval import XValConfig, XValLM


def xval_loss(
    logits: Float[Array, "b l v"],
    numbers: Float[Array, "b l"],
    targets: Int[Array, "b l"],
    target_values: Float[Array, "b l"],
    loss_mask: Float[Array, "b l"],
    *,
    num_token: int,
    num_loss_weight: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Token cross-entropy + weighted number MSE, both averaged over ``loss_mask``.

    Returns (loss, metrics) with metrics ``ce``, ``num_mse`` and ``token_acc``.
    """
    mask = loss_mask.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    n_tok = jnp.maximum(mask.sum(), 1.0)
    ce_mean = (ce * mask).sum() / n_tok
    num_mask = mask * (targets == num_token)
    err = jnp.square(numbers.astype(jnp.float32) - target_values.astype(jnp.float32))
    mse = jnp.where(num_mask > 0, err, 0.0).sum() / jnp.maximum(num_mask.sum(), 1.0)
    acc = ((jnp.argmax(logits, -1) == targets) * mask).sum() / n_tok
    return ce_mean + num_loss_weight * mse, {"ce": ce_mean, "num_mse": mse, "token_acc": acc}


def answer_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Scores predicted numbers (NaN = no valid number produced) against the truth.

    ``mse``: mean squared error over all samples, a missing prediction scored as 0 (the
    centre of the normalised range); ``within_1pct``: fraction with |pred - true| <= 1% of
    |true| (missing = miss); ``valid``: fraction of samples that produced a number.
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ok = np.isfinite(pred)
    filled = np.where(ok, pred, 0.0)
    within = ok & (np.abs(filled - true) <= 0.01 * np.abs(true))
    return {
        "mse": float(np.mean((filled - true) ** 2)),
        "within_1pct": float(np.mean(within)),
        "valid": float(np.mean(ok)),
    }


class XValTask:
    """The training task for :func:`jaxfm.train.run`: next-token CE + number MSE."""

    trainable = nnx.Param

    def __init__(self, cfg: XValConfig):
        self.cfg = cfg

    def build_model(self, rngs: nnx.Rngs) -> XValLM:
        """A freshly initialised :class:`XValLM`."""
        return XValLM(self.cfg, rngs=rngs)

    def _forward(
        self,
        model: XValLM,
        batch: dict[str, jax.Array],
        *,
        deterministic: bool,
        rngs: nnx.Rngs | None,
    ):
        logits, numbers = model(
            batch["tokens"][:, :-1], batch["values"][:, :-1], deterministic=deterministic, rngs=rngs
        )
        return xval_loss(
            logits,
            numbers,
            batch["tokens"][:, 1:],
            batch["values"][:, 1:],
            batch["loss_mask"][:, 1:],
            num_token=self.cfg.num_token,
            num_loss_weight=self.cfg.num_loss_weight,
        )

    def loss(
        self, model: XValLM, batch: dict[str, jax.Array], rngs: nnx.Rngs
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Training loss and metrics (ce, num_mse, token_acc) on one batch."""
        return self._forward(model, batch, deterministic=False, rngs=rngs)

    def eval_metrics(self, model: XValLM, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Teacher-forced loss, ce, num_mse and token_acc on the answer (and text) targets."""
        loss, metrics = self._forward(model, batch, deterministic=True, rngs=None)
        return {"loss": loss, **metrics}


class XValEnsemble(nnx.Module):
    """Independent :class:`XValLM` s, one per run name, trained side by side."""

    def __init__(self, cfgs: dict[str, XValConfig], *, rngs: nnx.Rngs):
        self.models = nnx.Dict({name: XValLM(cfg, rngs=rngs) for name, cfg in cfgs.items()})


class SideBySideTask:
    """Several xVal LMs (e.g. one per number encoding) trained in one engine run.

    Batches hold ``NAME/tokens``, ``NAME/values`` and ``NAME/loss_mask`` for every run name:
    the same samples, each in its own encoding, so every model sees the same data in the same
    order. The loss is the sum of the models' losses; the models share no parameters, so each
    gets exactly its own gradient, and a per-parameter optimizer (Adam/AdamW) moves each as if
    it were trained alone. Global-norm gradient clipping would couple them: turn it off
    (``train.clip_norm None``) for a fair comparison.
    """

    trainable = nnx.Param

    def __init__(self, cfgs: dict[str, XValConfig]):
        if not cfgs:
            raise ValueError("SideBySideTask needs at least one model config")
        self.cfgs = dict(cfgs)
        self.tasks = {name: XValTask(cfg) for name, cfg in self.cfgs.items()}

    def build_model(self, rngs: nnx.Rngs) -> XValEnsemble:
        """One freshly initialised :class:`XValLM` per run name."""
        return XValEnsemble(self.cfgs, rngs=rngs)

    @staticmethod
    def _sub(batch: dict[str, jax.Array], name: str) -> dict[str, jax.Array]:
        return {k: batch[f"{name}/{k}"] for k in ("tokens", "values", "loss_mask")}

    def _each(
        self,
        model: XValEnsemble,
        batch: dict[str, jax.Array],
        *,
        deterministic: bool,
        rngs: nnx.Rngs | None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        total, metrics = jnp.zeros((), jnp.float32), {}
        for name, task in self.tasks.items():
            loss, m = task._forward(
                model.models[name], self._sub(batch, name), deterministic=deterministic, rngs=rngs
            )
            total = total + loss
            metrics.update({f"{name}/loss": loss, **{f"{name}/{k}": v for k, v in m.items()}})
        return total, metrics

    def loss(
        self, model: XValEnsemble, batch: dict[str, jax.Array], rngs: nnx.Rngs
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Sum of the models' losses; metrics per model as ``NAME/ce`` etc."""
        return self._each(model, batch, deterministic=False, rngs=rngs)

    def eval_metrics(
        self, model: XValEnsemble, batch: dict[str, jax.Array]
    ) -> dict[str, jax.Array]:
        """Teacher-forced metrics per model, plus the summed ``loss``."""
        total, metrics = self._each(model, batch, deterministic=True, rngs=None)
        return {"loss": total, **metrics}
