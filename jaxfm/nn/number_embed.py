"""xVal number embedding and number head (Golkar, Pettee et al. 2023, arXiv 2310.02989).

Input side: ``h = E[token] * x_num + P[position]`` with ``x_num`` the (normalised) value at
[NUM] tokens and 1.0 everywhere else, so only the [NUM] embedding is scaled and every other
token gets its plain embedding. The order matters: the position embedding is added *after*
the scaling (the reference code before commit 653a942 scaled positions too). Because the
first pre-norm LayerNorm sees ``x e_NUM + p``, the value's magnitude survives normalisation
only in a bounded range, hence the per-field normalisation to about [-5, 5] in
:mod:`jaxfm.data.numbers`.

Output side: :class:`NumberHead` regresses one scalar per position from the final hidden
state, Linear(d, h) -> GELU -> Linear(h, 1) as in the reference ``num_head``.

Shapes: tokens int (B, L), values float (B, L) -> (B, L, dim); hidden (B, L, dim) -> (B, L).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxfm.nn.mlp import dense
from jaxfm.nn.params import param, partitioned


class NumberEmbedding(nnx.Module):
    """Token embedding scaled by the number value, plus a learned absolute position embedding.

    Args:
      vocab_size: number of token ids.
      dim: embedding width.
      max_len: longest sequence (positions 0..max_len-1).
      rngs: parameter initialisation.
    """

    def __init__(self, vocab_size: int, dim: int, max_len: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(stddev=0.02)
        self.token = nnx.Embed(
            vocab_size,
            dim,
            rngs=rngs,
            embedding_init=partitioned(init, ("vocab", "embed")),
        )
        self.position = param(init(rngs.params(), (max_len, dim), jnp.float32), (None, "embed"))
        self.max_len = max_len

    def __call__(
        self, tokens: Int[Array, "b l"], values: Float[Array, "b l"]
    ) -> Float[Array, "b l d"]:
        """Embeds ``tokens`` with [NUM] embeddings multiplied by ``values`` (1.0 elsewhere)."""
        length = tokens.shape[-1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len}")
        h = self.token(tokens) * values[..., None].astype(jnp.float32)
        pos = self.position[...][:length]
        return h + pos[(None,) * (h.ndim - 2)]  # explicit batch axes: no silent rank promotion


class NumberHead(nnx.Module):
    """Scalar regression head, (..., dim) -> (...): Linear -> GELU -> Linear(1)."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.up = dense(dim, hidden, ("embed", "mlp"), rngs)
        self.down = dense(hidden, 1, ("mlp", None), rngs)

    def __call__(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        """The predicted (normalised) number at every position."""
        return self.down(jax.nn.gelu(self.up(x), approximate=False))[..., 0]
