"""xVal embedding and number head against float64 NumPy references."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from jaxfm.nn.number_embed import NumberEmbedding, NumberHead

NUM = 3
# float32 forward passes of width-32 layers against float64 references: rounding of ~32-term
# dot products stays below 1e-5 relative; 1e-5 absolute on O(1) outputs leaves a wide margin
# while a wrong formula (e.g. scaled positions) is off by O(1e-2) or more.
ATOL = 1e-5


def _embedding(rng_seed=0):
    emb = NumberEmbedding(vocab_size=11, dim=32, max_len=16, rngs=nnx.Rngs(rng_seed))
    table = np.asarray(emb.token.embedding[...], np.float64)
    pos = np.asarray(emb.position[...], np.float64)
    return emb, table, pos


def test_scales_token_embedding_then_adds_positions():
    emb, table, pos = _embedding()
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 11, (3, 9)).astype(np.int32)
    values = np.where(tokens == NUM, rng.uniform(-5, 5, tokens.shape), 1.0).astype(np.float32)
    want = table[tokens] * values[..., None].astype(np.float64) + pos[None, :9]
    got = np.asarray(emb(jnp.asarray(tokens), jnp.asarray(values)), np.float64)
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_plain_embedding_at_unit_values_and_linear_in_value():
    emb, table, pos = _embedding(2)
    tokens = jnp.asarray([[5, NUM, 7, NUM]], jnp.int32)
    ones = jnp.ones((1, 4), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(emb(tokens, ones)[0]), table[[5, NUM, 7, NUM]] + pos[:4], atol=ATOL
    )
    # Linear in the value *before* the position term, positions never scaled:
    # f(x) - f(0) = x * E[NUM] and f(0) = pos at the [NUM] slot.
    for x in (-4.5, 0.3, 2.0):
        vals = jnp.asarray([[1.0, x, 1.0, 2 * x]], jnp.float32)
        zero = jnp.asarray([[1.0, 0.0, 1.0, 0.0]], jnp.float32)
        diff = np.asarray(emb(tokens, vals) - emb(tokens, zero))[0]
        np.testing.assert_allclose(diff[1], x * table[NUM], atol=ATOL)
        np.testing.assert_allclose(diff[3], 2 * x * table[NUM], atol=ATOL)
        np.testing.assert_allclose(np.asarray(emb(tokens, zero))[0, 1], pos[1], atol=ATOL)


def test_too_long_sequence_is_an_error():
    emb, _, _ = _embedding()
    with pytest.raises(ValueError, match="max_len=16"):
        emb(jnp.zeros((1, 17), jnp.int32), jnp.ones((1, 17), jnp.float32))


def test_number_head_matches_numpy_mlp():
    head = NumberHead(32, 48, rngs=nnx.Rngs(3))
    w1, b1 = (np.asarray(p[...], np.float64) for p in (head.up.kernel, head.up.bias))
    w2, b2 = (np.asarray(p[...], np.float64) for p in (head.down.kernel, head.down.bias))
    b1 = b1 + np.random.default_rng(4).normal(size=b1.shape)  # non-zero biases are used too
    head.up.bias[...] = jnp.asarray(b1, jnp.float32)
    x = np.random.default_rng(5).normal(size=(2, 7, 32)).astype(np.float32)
    h = x.astype(np.float64) @ w1 + b1
    want = ((0.5 * h * (1 + erf(h / np.sqrt(2)))) @ w2 + b2)[..., 0]  # exact (erf) GELU
    got = np.asarray(head(jnp.asarray(x)), np.float64)
    assert got.shape == (2, 7)
    np.testing.assert_allclose(got, want, atol=ATOL)
