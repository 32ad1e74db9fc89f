"""A small causal language model with xVal number encoding (arXiv 2310.02989).

Architecture: :class:`~jaxfm.nn.number_embed.NumberEmbedding` (token embedding x value, then
learned positions) -> shared :class:`~jaxfm.nn.trunk.Trunk` with ``causal=True`` -> two heads
on the same final hidden state: a token head (Linear -> GELU -> Linear(vocab), as the
reference ``lm_head``) and a number head (Linear -> GELU -> Linear(1)).

Loss (next-token, position t predicts token t+1): cross-entropy on the token head plus
``num_loss_weight`` x MSE of the number head at positions whose *target* is [NUM], both averaged
over ``loss_mask`` (the mean is guarded against batches without [NUM] targets).

Decoding (:func:`generate`): greedy; the token head decides which token comes, and when it is
[NUM] the number head gives its value, which is fed back as ``x_num`` of the emitted token.

The model is encoding-agnostic: the digit baselines (P10, P1000, FP15) use the same class with
their larger vocabulary; their batches have no [NUM] token, so the number head gets no loss
and is unused. The paper's demo model is bidirectional with masked-number training; a causal
LM is used here (as in x-transformers' xVal wrapper) so all encodings are trained and decoded
the same autoregressive way.

Batches (see :mod:`jaxfm.data.number_tasks`): ``tokens`` int32 (B, L), ``values`` float32
(B, L), ``loss_mask`` float32 (B, L), ``answer_pos`` int32 (B,), ``answer`` float32 (B,).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxfm.nn.mlp import dense
from jaxfm.nn.number_embed import NumberEmbedding, NumberHead
from jaxfm.nn.trunk import Trunk, TrunkConfig


def _default_trunk() -> TrunkConfig:
    return TrunkConfig(depth=2, dim=64, causal=True)


@dataclasses.dataclass(frozen=True)
class XValConfig:
    """The xVal language model."""

    vocab_size: int = 99
    """Token ids (text + specials + the encoding's number tokens); set from the codec."""
    max_len: int = 48
    """Longest sequence (size of the position table)."""
    trunk: TrunkConfig = dataclasses.field(default_factory=_default_trunk)
    """The transformer trunk; must be causal."""
    head_hidden: int = 128
    """Hidden width of the token and number heads."""
    num_loss_weight: float = 1.0
    """Weight of the number-head MSE relative to the token cross-entropy."""
    num_token: int = 3
    """Id of [NUM] (jaxfm.data.numbers.NUM)."""


class TokenHead(nnx.Module):
    """(..., dim) -> (..., vocab) logits: Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, vocab: int, *, rngs: nnx.Rngs):
        self.up = dense(dim, hidden, ("embed", "mlp"), rngs)
        self.down = dense(hidden, vocab, ("mlp", "vocab"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.gelu(self.up(x), approximate=False))


class XValLM(nnx.Module):
    """Causal transformer LM with a token head and a number head."""

    def __init__(self, cfg: XValConfig, *, rngs: nnx.Rngs):
        if not cfg.trunk.causal:
            raise ValueError("XValConfig.trunk.causal must be True for the xVal language model")
        dim = cfg.trunk.dim
        self.cfg = cfg
        self.embed = NumberEmbedding(cfg.vocab_size, dim, cfg.max_len, rngs=rngs)
        self.trunk = Trunk(cfg.trunk, rngs=rngs)
        self.token_head = TokenHead(dim, cfg.head_hidden, cfg.vocab_size, rngs=rngs)
        self.number_head = NumberHead(dim, cfg.head_hidden, rngs=rngs)

    def __call__(
        self,
        tokens: Int[Array, "b l"],
        values: Float[Array, "b l"],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[Float[Array, "b l v"], Float[Array, "b l"]]:
        """Next-token logits and next-number predictions at every position."""
        h = self.trunk(self.embed(tokens, values), deterministic=deterministic, rngs=rngs)
        return self.token_head(h), self.number_head(h)


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


def generate(
    model: XValLM,
    tokens: Int[Array, "b l"],
    values: Float[Array, "b l"],
    start: Int[Array, " b"],
    steps: int,
) -> tuple[jax.Array, jax.Array]:
    """Greedy decoding of ``steps`` tokens written at positions ``start .. start+steps-1``.

    Whatever ``tokens``/``values`` hold at and after ``start`` is ignored (causal model). An
    emitted [NUM] takes the number head's value; any other token gets value 1.0.
    Returns the completed (tokens, values).
    """
    num_token = model.cfg.num_token
    rows = jnp.arange(tokens.shape[0])
    for s in range(steps):
        logits, numbers = model(tokens, values)
        pos = start + s
        tok = jnp.argmax(logits[rows, pos - 1], axis=-1).astype(tokens.dtype)
        val = jnp.where(tok == num_token, numbers[rows, pos - 1], 1.0).astype(values.dtype)
        tokens = tokens.at[rows, pos].set(tok)
        values = values.at[rows, pos].set(val)
    return tokens, values


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
