"""Mamba-2 / SSD: stable segment sum, chunked SSD against the float64 naive recurrence and
against the Mamba-1 scan with a per-head scalar A (forward and gradients), the mixer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.nn.scan import selective_scan
from jaxfm.nn.ssd import Mamba2, segsum, ssd

# fp32 against float64: the mamba_ssm fp32 tolerances (rtol 6e-4, atol 2e-3).
FP32 = dict(rtol=6e-4, atol=2e-3)


def naive_ssd(x, dt, A, B, C, D, h0):
    """float64 NumPy recurrence per head: H_t = exp(dt a) H + dt x B^T, y = H C + D x."""
    b, l, h, p = x.shape
    g = B.shape[2]
    Bh, Ch = (np.repeat(t, h // g, axis=2) for t in (B, C))
    H = h0.copy()
    y = np.zeros_like(x)
    for t in range(l):
        dec = np.exp(dt[:, t] * A[None])  # (b, h)
        H = (
            dec[..., None, None] * H
            + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        )
        y[:, t] = np.einsum("bhpn,bhn->bhp", H, Ch[:, t]) + D[None, :, None] * x[:, t]
    return y, H


def make(seed, b=2, l=50, h=4, p=3, g=2, n=5):
    """The mamba_ssm SSD self-test ranges: dt = softplus(randn - 4), A = -exp(rand)."""
    r = np.random.default_rng(seed)
    return dict(
        x=r.standard_normal((b, l, h, p)),
        dt=np.log1p(np.exp(r.standard_normal((b, l, h)) - 4)),
        A=-np.exp(r.random(h)),
        B=r.standard_normal((b, l, g, n)),
        C=r.standard_normal((b, l, g, n)),
        D=r.standard_normal(h),
        h0=r.standard_normal((b, h, p, n)),
    )


_ssd = jax.jit(ssd, static_argnames="chunk")


def test_segsum_is_stable():
    # chunk 256 with steps dt·a in [-16, 0]: cumulative log-decays reach -4000, where the
    # difference of two cumsums loses ~1e-4 (measured 9.3e-5); the stable form stays ~1e-8.
    a = -16 * np.random.default_rng(0).random(256)
    exact = np.full((256, 256), -np.inf)
    for i in range(256):
        for j in range(i + 1):
            exact[i, j] = a[j + 1 : i + 1].sum()
    got = np.asarray(jnp.exp(segsum(jnp.asarray(a, jnp.float32))), np.float64)
    assert np.abs(got - np.exp(exact)).max() < 1e-6
    cs = jnp.cumsum(jnp.asarray(a, jnp.float32))
    diff = np.asarray(jnp.exp(cs[:, None] - cs[None, :]), np.float64)  # the cancelling form
    lower = np.tril(np.ones((256, 256), bool))
    assert np.abs(np.where(lower, diff, 0) - np.exp(exact)).max() > 1e-6  # control


@pytest.mark.parametrize("chunk", [16, 64])
def test_chunked_ssd_matches_naive_recurrence(chunk):
    inp = make(1)  # l = 50: a partial last chunk (16) and a single padded chunk (64)
    y_ref, h_ref = naive_ssd(**inp)
    args = {k: jnp.asarray(v, jnp.float32) for k, v in inp.items()}
    y, h = _ssd(**args, chunk=chunk)
    np.testing.assert_allclose(np.asarray(y), y_ref, **FP32)
    np.testing.assert_allclose(np.asarray(h), h_ref, **FP32)


def _as_mamba1(x, dt, A, B, C, D):
    """The same SSM through the Mamba-1 scan: channels (h, p), A_hn = a_h, one group."""
    b, l, h, p = x.shape
    n = B.shape[-1]
    xs = x.reshape(b, l, h * p)
    dts = jnp.repeat(dt, p, axis=2)
    As = jnp.broadcast_to(jnp.repeat(A, p)[:, None], (h * p, n))
    y, last = selective_scan(xs, dts, As, B[:, :, 0], C[:, :, 0], jnp.repeat(D, p), method="linear")
    return y.reshape(b, l, h, p), last.reshape(b, h, p, n)


def test_ssd_equals_mamba1_scan_forward_and_gradients():
    inp = make(2, l=40, g=1)
    args = {k: jnp.asarray(v, jnp.float32) for k, v in inp.items() if k != "h0"}
    gy = jnp.asarray(np.random.default_rng(3).standard_normal(inp["x"].shape), jnp.float32)

    def loss(fn, a):
        y, last = fn(a)
        return jnp.sum(y * gy) + jnp.sum(last)

    f_ssd = lambda a: ssd(**a, chunk=16)
    f_m1 = lambda a: _as_mamba1(**a)
    (l1, g1), (l2, g2) = (
        jax.jit(jax.value_and_grad(lambda a, f=f: loss(f, a)))(args) for f in (f_ssd, f_m1)
    )
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-5)
    for k in args:  # gradient tolerance of the mamba_ssm scan tests
        np.testing.assert_allclose(
            np.asarray(g1[k]), np.asarray(g2[k]), rtol=1e-3, atol=1e-3, err_msg=k
        )


def test_mamba2_mixer_is_causal_and_skips_padding():
    m = Mamba2(16, d_state=8, headdim=8, chunk=8, rngs=nnx.Rngs(0))
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(k1, (1, 20, 16))
    f = nnx.jit(lambda m, x, mask: m(x, mask=mask))
    ones = jnp.ones((1, 20), bool)
    y, y2 = f(m, x, ones), f(m, x.at[:, 12].add(1.0), ones)
    np.testing.assert_array_equal(np.asarray(y[:, :12]), np.asarray(y2[:, :12]))
    assert np.abs(np.asarray(y[:, 12:] - y2[:, 12:])).min(axis=-1).max() > 0
    # junk at masked positions in the middle changes nothing at the real tokens after them
    junk = x.at[:, 5:8].set(10 * jax.random.normal(k2, (1, 3, 16)))
    mask = ones.at[:, 5:8].set(False)
    y_mask, y_junk = f(m, x, mask), f(m, junk, mask)
    np.testing.assert_allclose(
        np.asarray(y_junk[:, 8:]), np.asarray(y_mask[:, 8:]), rtol=1e-5, atol=1e-5
    )
    assert np.abs(np.asarray(y_mask[:, 8:] - y[:, 8:])).max() > 1e-3  # the mask did act
