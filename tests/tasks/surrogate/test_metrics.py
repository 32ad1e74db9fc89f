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
        np.asarray(nrmse(p32, y32)), np.sqrt(mse / ((y**2).mean(axis=(1, 2)) + 1e-7)), rtol=1e-4
    )
    # The Well: torch.std(y, dim=spatial) ** 2, i.e. the unbiased (N - 1) variance, + 1e-7
    var = y.var(axis=(1, 2), ddof=1)
    np.testing.assert_allclose(np.asarray(vrmse(p32, y32)), np.sqrt(mse / (var + 1e-7)), rtol=1e-4)
    loss = (mse / ((y**2).mean(axis=(1, 2)) + 1e-7)).mean()
    np.testing.assert_allclose(float(surrogate_loss(p32, y32)), loss, rtol=1e-4)
    np.testing.assert_allclose(
        float(surrogate_loss(p32, y32, kind="l1")), np.abs(pred - y).mean(), rtol=1e-4
    )


def test_vrmse_of_the_mean_is_one_and_nrmse_flatters_offsets(fields):
    _, y = fields
    mean_pred = np.broadcast_to(y.mean(axis=(1, 2), keepdims=True), y.shape)
    v = np.asarray(vrmse(jnp.asarray(mean_pred, jnp.float32), jnp.asarray(y, jnp.float32)))
    n_points = 16 * 16  # unbiased variance: the mean scores sqrt((N - 1) / N), not exactly 1
    np.testing.assert_allclose(v, np.sqrt((n_points - 1) / n_points), rtol=1e-4)
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


def _reference(pred, y, eps=1e-7):
    """Independent float64 NumPy definitions (docs/surrogate.md "Metrics")."""
    ax = tuple(range(1, y.ndim - 1))
    mse = ((pred - y) ** 2).mean(axis=ax)
    return {
        "rmse": np.sqrt(mse),
        "nrmse": np.sqrt(mse / ((y**2).mean(axis=ax) + eps)),
        "vrmse": np.sqrt(mse / (y.var(axis=ax, ddof=1) + eps)),
    }


def test_metrics_on_random_inputs_and_an_all_zero_field_match_float64_reference():
    rng = np.random.default_rng(7)
    y = rng.normal(size=(4, 12, 10, 3)) * rng.uniform(0.1, 5.0, size=3)
    y[1, ..., 2] = 0.0  # an all-zero target field (e.g. a velocity at rest)
    pred = y + 0.05 * rng.normal(size=y.shape)
    ref = _reference(pred, y)
    p32, y32 = jnp.asarray(pred, jnp.float32), jnp.asarray(y, jnp.float32)
    for name, fn in (("rmse", rmse), ("nrmse", nrmse), ("vrmse", vrmse)):
        got = np.asarray(fn(p32, y32))
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, ref[name], rtol=1e-4, err_msg=name)
    # what the eps buys: 0/0 would be NaN, mse/0 inf
    assert np.isfinite(ref["nrmse"][1, 2]) and ref["nrmse"][1, 2] > 1.0


def test_training_eval_and_rollout_share_one_nrmse():
    from jaxfm.tasks.surrogate.rollout import per_step_errors

    rng = np.random.default_rng(3)
    y = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    y[0, ..., 1] = 0.0
    pred = (y + 0.1 * rng.normal(size=y.shape)).astype(np.float32)
    one = np.asarray(nrmse(jnp.asarray(pred), jnp.asarray(y)))
    steps = per_step_errors(jnp.asarray(pred[:, None]), jnp.asarray(y[:, None]), ("nrmse",))
    np.testing.assert_allclose(steps["nrmse"][:, 0], one, rtol=1e-6)
    np.testing.assert_allclose(one, _reference(pred, y)["nrmse"], rtol=1e-4)


def test_system_summary_is_the_mean_over_systems_of_per_system_means():
    from jaxfm.tasks.surrogate.metrics import system_summary

    # system 0: 3 windows of 2 fields; system 1: 1 window of 1 field (+ a padding channel)
    values = {
        "nrmse": np.array([[1.0, 3.0], [1.0, 3.0], [1.0, 3.0], [10.0, 99.0]]),
        "loss": np.array([1.0, 1.0, 1.0, 5.0]),
        "system": np.array([0, 0, 0, 1]),
        "field_ids": np.array([[0, 1], [0, 1], [0, 1], [2, -1]]),
    }
    out = system_summary(values, ["sw", "ns"], ["h", "u", "v"])
    assert out["nrmse/sw"] == 2.0 and out["nrmse/ns"] == 10.0
    assert out["nrmse/sw/h"] == 1.0 and out["nrmse/sw/u"] == 3.0 and out["nrmse/ns/v"] == 10.0
    assert "nrmse/ns/u" not in out  # the padding channel is no field
    assert out["nrmse"] == 6.0  # not the mean over windows (or entries): systems weigh alike
    assert out["loss"] == 3.0 and out["loss/ns"] == 5.0
    assert out["windows"] == 4 and out["windows/sw"] == 3 and out["windows/ns"] == 1


def test_increment_loss_is_mse_relative_to_persistence(fields):
    pred, y = fields
    last = y + 0.3 * np.random.default_rng(1).normal(size=y.shape)
    f32 = [jnp.asarray(a, jnp.float32) for a in (pred, y, last)]
    want = (
        ((pred - y) ** 2).mean(axis=(1, 2)) / (((last - y) ** 2).mean(axis=(1, 2)) + 1e-7)
    ).mean()
    got = float(surrogate_loss(f32[0], f32[1], kind="increment", last=f32[2]))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # persistence scores exactly 1
    np.testing.assert_allclose(
        float(surrogate_loss(f32[2], f32[1], kind="increment", last=f32[2])), 1.0, rtol=1e-5
    )
    with pytest.raises(ValueError, match="last input frame"):
        surrogate_loss(f32[0], f32[1], kind="increment")
