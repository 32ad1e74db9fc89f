"""RevIN: statistics against float64 NumPy, exact round trip, no gradient through stats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.nn.revin import revin_denormalize, revin_normalize, revin_stats


def test_stats_match_numpy_float64():
    rng = np.random.default_rng(0)
    # fields with very different offsets and scales, as in compressible NS
    x = rng.normal(size=(3, 4, 8, 6, 2)) * np.array([0.01, 5.0]) + np.array([60.0, -1.0])
    stats = revin_stats(jnp.asarray(x, jnp.float32))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), ddof=1, keepdims=True) + 1e-7
    # float32 mean of values ~60 with spread 0.01: relative error ~1e-6 of the offset
    np.testing.assert_allclose(np.asarray(stats.mean), mean, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(stats.std), std, rtol=1e-4)
    assert stats.mean.shape == (3, 1, 1, 1, 2)


def test_round_trip_restores_input():
    x = jax.random.normal(jax.random.key(1), (2, 5, 16, 16, 3)) * 3.0 + 7.0
    xn, stats = revin_normalize(x)
    # normalised fields have zero mean and unit (unbiased) std per sample and field
    np.testing.assert_allclose(np.asarray(xn.mean(axis=(1, 2, 3))), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(xn.std(axis=(1, 2, 3), ddof=1)), 1.0, atol=1e-4)
    back = revin_denormalize(xn, stats)
    # float32 round trip of values ~7 with std 3: a few ulps
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), rtol=0, atol=5e-6)
    # a frame without the time axis (the model's prediction) de-normalises the same way
    np.testing.assert_allclose(
        np.asarray(revin_denormalize(xn[:, -1], stats)), np.asarray(x[:, -1]), atol=5e-6
    )


def test_no_gradient_through_statistics():
    x = jax.random.normal(jax.random.key(2), (1, 3, 4, 4, 1))
    g = jax.grad(lambda x: revin_stats(x).std.sum() + revin_stats(x).mean.sum())(x)
    assert float(jnp.abs(g).max()) == 0.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="at least 2 points"):
        revin_stats(jnp.ones((2, 1, 1)))
    _, stats = revin_normalize(jnp.ones((2, 3, 4, 4, 1)) + jnp.arange(16.0).reshape(1, 1, 4, 4, 1))
    with pytest.raises(ValueError, match="cannot de-normalise"):
        revin_denormalize(jnp.ones((2, 4, 1)), stats)
