"""PDE metrics and losses against float64 NumPy on fresh random fields."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.tasks.surrogate.metrics import group_mean, nrmse, rmse, surrogate_loss, vrmse

# float32 reductions over 16x16 points of O(1)-O(60) values: relative error ~1e-6; 1e-5 margin
RTOL = 1e-5


@pytest.fixture
def fields():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 16, 16, 2)) * np.array([0.3, 2.0]) + np.array([60.0, 0.0])
    pred = y + 0.1 * rng.normal(size=y.shape)
    return pred, y


def test_metrics_match_numpy(fields):
    pred, y = fields
    mse = ((pred - y) ** 2).mean(axis=(1, 2))
    p32, y32 = jnp.asarray(pred, jnp.float32), jnp.asarray(y, jnp.float32)
    np.testing.assert_allclose(np.asarray(rmse(p32, y32)), np.sqrt(mse), rtol=1e-4)
    np.testing.assert_allclose(
        np.asarray(nrmse(p32, y32)), np.sqrt(mse / (y**2).mean(axis=(1, 2))), rtol=1e-4
    )
    np.testing.assert_allclose(
        np.asarray(vrmse(p32, y32)), np.sqrt(mse / (y.var(axis=(1, 2)) + 1e-7)), rtol=1e-4
    )
    loss = (mse / ((y**2).mean(axis=(1, 2)) + 1e-7)).mean()
    np.testing.assert_allclose(float(surrogate_loss(p32, y32)), loss, rtol=1e-4)
    np.testing.assert_allclose(
        float(surrogate_loss(p32, y32, kind="l1")), np.abs(pred - y).mean(), rtol=1e-4
    )


def test_vrmse_of_the_mean_is_one_and_nrmse_flatters_offsets(fields):
    _, y = fields
    mean_pred = np.broadcast_to(y.mean(axis=(1, 2), keepdims=True), y.shape)
    v = np.asarray(vrmse(jnp.asarray(mean_pred, jnp.float32), jnp.asarray(y, jnp.float32)))
    np.testing.assert_allclose(v, 1.0, rtol=1e-4)
    n = np.asarray(nrmse(jnp.asarray(mean_pred, jnp.float32), jnp.asarray(y, jnp.float32)))
    assert np.all(n[:, 0] < 0.01)  # field 0 sits at 60 +- 0.3: NRMSE hides the miss


def test_masked_loss_ignores_padding_channels(fields):
    pred, y = fields
    pred = jnp.asarray(pred, jnp.float32).at[..., 1].set(1e6)  # garbage in a padding channel
    valid = jnp.array([[True, False]] * 3)
    got = surrogate_loss(pred, jnp.asarray(y, jnp.float32), kind="mse", valid=valid)
    want = ((np.asarray(pred)[..., 0] - y[..., 0]) ** 2).mean()
    np.testing.assert_allclose(float(got), want, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown surrogate loss"):
        surrogate_loss(pred, pred, kind="huber")


def test_group_mean():
    values = np.array([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]])
    ids = np.array([[0, 5, -1], [0, 5, -1]])
    assert group_mean(values, ids, names=["a", "b", "c", "d", "e", "f"]) == {"a": 2.0, "f": 3.0}
    assert group_mean(values[:, :2], np.array([[1], [2]])) == {"1": 1.5, "2": 3.5}
