"""Mamba-1 mixer: reference initialisation, a float64 NumPy re-implementation of the whole
block from the module's own weights, causality, padding masks, the bidirectional wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.nn.bidirectional import Bidirectional
from jaxfm.nn.mamba import Mamba
from jaxfm.nn.scan_reference import oracle_forward
from jaxfm.nn.trunk import count_params


def _np(v):
    return np.asarray(v[...], np.float64)


def numpy_mamba(m: Mamba, x: np.ndarray) -> np.ndarray:
    """The published Mamba-1 forward in float64 NumPy (independent of jaxfm.nn.scan)."""
    silu = lambda v: v / (1 + np.exp(-v))
    softplus = lambda v: np.log1p(np.exp(v))
    xz = x @ _np(m.in_proj.kernel)
    u, z = np.split(xz, 2, axis=-1)
    k = _np(m.conv.kernel)[:, 0, :]  # (width, channels), depthwise
    w = k.shape[0]
    up = np.pad(u, ((0, 0), (w - 1, 0), (0, 0)))
    conv = sum(k[j] * up[:, j : j + u.shape[1]] for j in range(w)) + _np(m.conv.bias)
    u = silu(conv)
    dbc = u @ _np(m.x_proj.kernel)
    r, n = m.dt_rank, m.d_state
    delta, bm, cm = dbc[..., :r], dbc[..., r : r + n], dbc[..., r + n :]
    dt = softplus(delta @ _np(m.dt_proj.kernel) + _np(m.dt_bias))
    a = -np.exp(_np(m.A_log))
    h0 = np.zeros((x.shape[0], u.shape[-1], n))
    y, _ = oracle_forward(u, dt, a, bm, cm, _np(m.D), h0)
    return (y * silu(z)) @ _np(m.out_proj.kernel)


def test_reference_initialisation_and_parameter_count():
    m = Mamba(64, rngs=nnx.Rngs(0))
    # d 64: 32,640 parameters in mamba_ssm's Mamba(d_model=64) (in_proj 16384, conv 640,
    # x_proj 4608, dt_proj 512 + bias 128, A_log 2048, D 128, out_proj 8192).
    assert count_params(m) == 32640
    np.testing.assert_array_equal(
        np.asarray(m.A_log[...]), np.tile(np.log(np.arange(1, 17, dtype=np.float32)), (128, 1))
    )
    np.testing.assert_array_equal(_np(m.D), np.ones(128))
    dt = np.log1p(np.exp(_np(m.dt_bias)))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert np.abs(_np(m.dt_proj.kernel)).max() <= 4**-0.5  # dt_rank = ceil(64 / 16) = 4
    # log-uniform: the median of log dt sits near the middle of [log 1e-3, log 0.1]
    assert abs(np.median(np.log(dt)) - np.log(1e-2)) < 0.5


@pytest.mark.parametrize("scan", [pytest.param("linear", marks=pytest.mark.slow), "chunked"])
def test_block_matches_float64_numpy(scan):
    m = Mamba(16, d_state=8, scan=scan, chunk=8, rngs=nnx.Rngs(1))
    x = np.random.default_rng(0).standard_normal((2, 21, 16))
    y = nnx.jit(lambda m, x: m(x))(m, jnp.asarray(x, jnp.float32))
    # fp32 end to end through four matmuls and the scan: mamba's fp32 tolerances.
    np.testing.assert_allclose(np.asarray(y), numpy_mamba(m, x), rtol=6e-4, atol=2e-3)


def test_causal():
    m = Mamba(16, d_state=8, scan="linear", rngs=nnx.Rngs(2))
    x = jax.random.normal(jax.random.key(0), (1, 32, 16))
    x2 = x.at[:, 20].add(1.0)
    f = nnx.jit(lambda m, x: m(x))
    y, y2 = f(m, x), f(m, x2)
    np.testing.assert_array_equal(np.asarray(y[:, :20]), np.asarray(y2[:, :20]))
    assert np.abs(np.asarray(y[:, 20:] - y2[:, 20:])).min(axis=-1).max() > 0


def test_padding_mask_equals_unpadded():
    m = Mamba(16, d_state=8, chunk=8, rngs=nnx.Rngs(3))
    bi = Bidirectional(m, Mamba(16, d_state=8, chunk=8, rngs=nnx.Rngs(4)))
    k1, k2 = jax.random.split(jax.random.key(1))
    x = jax.random.normal(k1, (1, 12, 16))
    junk = 10 * jax.random.normal(k2, (1, 5, 16))  # padding content must not matter
    xp = jnp.concatenate([x, junk], axis=1)
    mask = jnp.arange(17)[None] < 12
    # The bidirectional wrapper covers padding at the end (forward pass, m) and at the start
    # (reversed pass); one compiled program for both inputs.
    f = nnx.jit(lambda bi, x, mask: bi(x, mask=mask))
    y = f(bi, xp, jnp.ones((1, 17), bool))[:, :12]  # control: the padding left unmasked
    y_ref = nnx.jit(lambda bi, x: bi(x))(bi, x)
    yp = f(bi, xp, mask)
    # same arithmetic except the scan chunk boundaries: fp32 round-off only
    np.testing.assert_allclose(np.asarray(yp[:, :12]), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(y - y_ref)).max() > 1e-3  # control: unmasked padding leaks
    with pytest.raises(ValueError, match="token mask"):
        m(x, mask=jnp.ones((1, 1, 12, 12), bool))


def test_bidirectional_sees_both_directions():
    bi = Bidirectional(
        Mamba(16, d_state=8, scan="linear", rngs=nnx.Rngs(5)),
        Mamba(16, d_state=8, scan="linear", rngs=nnx.Rngs(6)),
    )
    x = jax.random.normal(jax.random.key(2), (1, 16, 16))
    f = nnx.jit(lambda bi, x: (bi(x), bi.forward(x) + jnp.flip(bi.backward(jnp.flip(x, 1)), 1)))
    (y, ref), (y2, _) = f(bi, x), f(bi, x.at[:, 10].add(1.0))
    changed = np.abs(np.asarray(y - y2)).max(axis=-1)[0]
    assert (changed[:10] > 0).all() and (changed[10:] > 0).all()
    # and it is the sum of a forward and a flipped backward pass (same ops, same program)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_bf16_compute_keeps_float32_scan():
    # The engine casts every float parameter and the batch to bf16. The block must still run
    # softplus/exp and the scan in float32: compare with the float32 block on the same
    # bf16-rounded weights and inputs; bf16 tolerances of the mamba_ssm tests (3e-2/5e-2).
    m = Mamba(32, d_state=16, chunk=16, rngs=nnx.Rngs(7))
    x = jax.random.normal(jax.random.key(3), (2, 64, 32)).astype(jnp.bfloat16)
    graphdef, state = nnx.split(m)
    cast = lambda dt: jax.tree.map(lambda v: v.astype(jnp.bfloat16).astype(dt), state)
    f = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
    y16 = f(cast(jnp.bfloat16), x)
    y32 = f(cast(jnp.float32), x.astype(jnp.float32))
    assert y16.dtype == jnp.bfloat16
    scale = float(jnp.abs(y32).max())
    np.testing.assert_allclose(
        np.asarray(y16, np.float32) / scale, np.asarray(y32) / scale, rtol=3e-2, atol=5e-2
    )
