"""The AViT's training levers (increment units, patch jitter, input noise), each against a
float64 NumPy reference or an exact identity, on fresh random inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxfm.models.surrogate as surrogate
from jaxfm.models.surrogate import AViT, avit_config, increment_rms, jitter_shifts, roll_grid


def _window(seed=0, b=2, t=4, h=16, c=3):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 5.0, c)
    offset = rng.uniform(-2.0, 60.0, c)
    return (rng.normal(size=(b, t, h, h, c)) * scale + offset).astype(np.float32)


def _nonzero_head(model, seed=7):
    """Makes the zero-initialised delta output kernel random, so the increment is not 0."""
    k = model.destem.out_kernel
    k[...] = 0.1 * jax.random.normal(jax.random.key(seed), k[...].shape)
    return model


def test_increment_rms_matches_numpy():
    x = _window(1)
    d = np.diff(x.astype(np.float64), axis=1)
    want = np.sqrt((d**2).mean(axis=(1, 2, 3))) + 1e-4
    got = np.asarray(increment_rms(jnp.asarray(x)))
    assert got.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(got[:, 0, 0], want, rtol=1e-5)
    # one frame: no increment, unit scale
    np.testing.assert_array_equal(np.asarray(increment_rms(jnp.asarray(x[:, :1]))), 1.0)


def test_increment_units_rescale_the_decoded_increment():
    """Same parameters, two units: (next - last) / std differs exactly by the window's RMS
    increment (in RevIN units) per sample and field."""
    x = jnp.asarray(_window(2))
    ids = jnp.array([[0, 4, 7]] * 2)
    win = _nonzero_head(AViT(avit_config("smoke"), rngs=nnx.Rngs(0)))
    inc = AViT(avit_config("smoke", delta_scale="increment"), rngs=nnx.Rngs(0))
    nnx.update(inc, nnx.state(win))
    xd = np.asarray(x, np.float64)
    mean = xd.mean(axis=(1, 2, 3), keepdims=True)[:, 0]
    std = xd.std(axis=(1, 2, 3), ddof=1, keepdims=True)[:, 0] + 1e-7
    xn = (xd - mean[:, None]) / std[:, None]
    rms = np.sqrt((np.diff(xn, axis=1) ** 2).mean(axis=(1, 2, 3)))[:, None, None, :] + 1e-4
    d_win = (np.asarray(win(x, ids), np.float64) - xd[:, -1]) / std
    d_inc = (np.asarray(inc(x, ids), np.float64) - xd[:, -1]) / std
    assert np.abs(d_win).max() > 1e-2  # the head really is non-zero
    np.testing.assert_allclose(d_inc, d_win * rms, rtol=2e-3, atol=2e-5)
    with pytest.raises(ValueError, match="delta_scale"):
        AViT(avit_config("smoke", delta_scale="bogus"), rngs=nnx.Rngs(0))(x, ids)


def test_roll_grid_matches_numpy_and_inverts():
    x = _window(3)
    shift = np.array([[1, 3], [0, 5]], np.int32)
    got = np.asarray(roll_grid(jnp.asarray(x), jnp.asarray(shift)))
    for i in range(2):
        np.testing.assert_array_equal(got[i], np.roll(x[i], tuple(shift[i]), axis=(-3, -2)))
    back = roll_grid(jnp.asarray(got), -jnp.asarray(shift))
    np.testing.assert_array_equal(np.asarray(back), x)


def test_jitter_shifts_only_periodic_axes():
    per = jnp.array([[True, False], [False, True], [True, True]])
    s = np.asarray(jitter_shifts(jax.random.key(0), per, 3, 8))
    assert s.dtype == np.int32 and s.min() >= 0 and s.max() < 8
    assert s[0, 1] == 0 and s[1, 0] == 0
    many = np.asarray(jitter_shifts(jax.random.key(1), jnp.array([True, True]), 256, 8))
    assert set(np.unique(many)) == set(range(8))  # every offset is drawn


def test_patch_jitter_is_the_shifted_model_shifted_back(monkeypatch):
    """With a fixed shift, the jittered training forward equals the deterministic forward of
    the rolled input rolled back: the jitter moves the patch grid and nothing else."""
    x = jnp.asarray(_window(4))
    ids = jnp.array([[0, 4, 7]] * 2)
    per = jnp.array([[True, True], [True, False]])
    cfg = avit_config("smoke", patch_jitter=True, layer_scale=1.0)
    model = _nonzero_head(AViT(cfg, rngs=nnx.Rngs(1)))
    shift = jnp.array([[3, 5], [6, 0]], jnp.int32)
    monkeypatch.setattr(surrogate, "jitter_shifts", lambda key, p, b, patch: shift)
    jittered = model(x, ids, periodic=per, deterministic=False, rngs=nnx.Rngs(dropout=0))
    manual = roll_grid(model(roll_grid(x, shift), ids, periodic=per), -shift)
    plain = model(x, ids, periodic=per)
    np.testing.assert_allclose(np.asarray(jittered), np.asarray(manual), rtol=1e-5, atol=1e-4)
    assert not np.allclose(np.asarray(jittered), np.asarray(plain), atol=1e-3)
    # deterministic calls (evaluation, rollouts) never jitter
    np.testing.assert_array_equal(np.asarray(model(x, ids, periodic=per)), np.asarray(plain))


def test_input_noise_only_while_training():
    x = jnp.asarray(_window(5, h=32))
    ids = jnp.array([[0, 4, 7]] * 2)
    model = AViT(avit_config("smoke", input_noise=0.05), rngs=nnx.Rngs(2))
    clean = np.asarray(model(x, ids), np.float64)
    np.testing.assert_allclose(clean, np.asarray(x[:, -1]), atol=2e-5)  # zero head: persistence
    noisy = np.asarray(model(x, ids, deterministic=False, rngs=nnx.Rngs(dropout=1)), np.float64)
    xd = np.asarray(x, np.float64)
    std = xd.std(axis=(1, 2, 3), ddof=1)
    # the zero head passes the noisy last frame through: its noise, in RevIN units, is 0.05
    measured = (noisy - clean).std(axis=(1, 2)) / std
    np.testing.assert_allclose(measured, 0.05, rtol=0.1)


@pytest.mark.parametrize("strides", [(2,), (4,), (2, 2)])
def test_any_number_of_stem_stages(strides):
    """Patch 2 or 4 in one stage (fine grids) decodes to the input grid; it once failed on the
    de-stem's channel count."""
    x = jnp.asarray(_window(6))
    ids = jnp.array([[0, 4, 7]] * 2)
    model = AViT(avit_config("smoke", patch_strides=strides, delta=False), rngs=nnx.Rngs(0))
    y = np.asarray(model(x, ids))
    assert y.shape == (2, 16, 16, 3) and np.isfinite(y).all()
