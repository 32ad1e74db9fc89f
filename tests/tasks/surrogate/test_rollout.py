"""Rollout with a sliding context against a NumPy loop; window summaries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.nn.aux import record_aux_loss
from jaxfm.tasks.surrogate.pipeline import rollout_predictions
from jaxfm.tasks.surrogate.rollout import per_step_errors, rollout, window_means


def test_rollout_matches_numpy_loop():
    rng = np.random.default_rng(0)
    ctx = rng.normal(size=(2, 3, 4, 4, 2))
    # a step that uses every frame of the window, so a wrong slide shows up
    coef = np.array([0.2, -0.5, 1.1])

    def step_np(w):
        return np.einsum("t,bt...->b...", coef, w) + 0.01

    want, window = [], ctx.copy()
    for _ in range(7):
        nxt = step_np(window)
        want.append(nxt)
        window = np.concatenate([window[:, 1:], nxt[:, None]], axis=1)
    want = np.stack(want, axis=1)

    step = jax.jit(
        lambda c: rollout(
            lambda w: jnp.einsum("t,bt...->b...", jnp.asarray(coef, jnp.float32), w) + 0.01, c, 7
        )
    )
    got = np.asarray(step(jnp.asarray(ctx, jnp.float32)))
    assert got.shape == (2, 7, 4, 4, 2)
    # float32 recursion over 7 steps with |coef| sum ~1.8: errors grow to ~1e-5 relative
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_persistence_rollout_and_errors():
    rng = np.random.default_rng(1)
    traj = jnp.asarray(rng.normal(size=(2, 10, 8, 8, 1)), jnp.float32)
    preds = rollout(lambda w: w[:, -1], traj[:, :4], 6)
    np.testing.assert_array_equal(np.asarray(preds), np.repeat(np.asarray(traj[:, 3:4]), 6, 1))
    errs = per_step_errors(preds, traj[:, 4:])
    assert errs["nrmse"].shape == (2, 6, 1)
    y, p = np.asarray(traj[:, 4:], np.float64), np.asarray(preds, np.float64)
    want = np.sqrt(((p - y) ** 2).mean(axis=(2, 3)) / (y**2).mean(axis=(2, 3)))
    np.testing.assert_allclose(errs["nrmse"], want, rtol=1e-4)


def test_window_means_truncate_to_available_steps():
    per = np.arange(8, dtype=float)[None, :, None] * np.ones((2, 8, 3))  # step k has error k-1
    assert window_means(per) == {"1": 0.0, "2-5": 2.5, "6-8": 6.0}
    assert window_means(per[:, :1]) == {"1": 0.0}
    valid = np.array([[True, True, False], [True, True, False]])
    per2 = per.copy()
    per2[..., 2] = 1e9
    assert window_means(per2, valid=valid) == {"1": 0.0, "2-5": 2.5, "6-8": 6.0}
    with pytest.raises(ValueError, match="n_steps >= 1"):
        rollout(lambda w: w[:, -1], jnp.ones((1, 2, 3)), 0)


class _SowingStep(nnx.Module):
    """x_{t+1} = a * x_t, recording an auxiliary loss on every call (as an MoE layer does)."""

    def __init__(self):
        self.a = nnx.Param(jnp.asarray(0.5, jnp.float32))

    def __call__(self, window, ids, periodic):
        record_aux_loss(self, "z", jnp.mean(window**2))
        return self.a[...] * window[:, -1]


def test_rollout_predictions_with_a_model_that_sows_aux_losses():
    # Regression: sowing inside the rollout's lax.scan from a module built outside it raised
    # flax's TraceContextError (the MoE trunk of backbone_compare.py).
    traj = np.random.default_rng(0).normal(size=(3, 6, 4, 4, 2)).astype(np.float32)
    preds = rollout_predictions(_SowingStep(), traj, np.array([0, 1]), (True, True), 2, 3)
    want = traj[:, 1:2] * 0.5 ** np.arange(1, 4)[None, :, None, None, None]
    np.testing.assert_allclose(preds, want, rtol=1e-6)
