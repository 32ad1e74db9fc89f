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
