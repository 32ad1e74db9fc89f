"""Selective scan: the three backends against a float64 NumPy oracle of the published
recurrence (forward, last state, and gradients from a hand-written adjoint), plus the
memory property of the chunked scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.nn.scan import METHODS, selective_scan
from jaxfm.nn.scan_reference import oracle_forward, oracle_grads

# Tolerances of state-spaces/mamba tests/ops/test_selective_scan.py (rtol, atol): fp32
# 6e-4/2e-3, bf16 3e-2/5e-2; weight gradients 1e-3. Our fp32 errors are ~1e-5.
FP32 = dict(rtol=6e-4, atol=2e-3)
BF16 = dict(rtol=3e-2, atol=5e-2)


def make_inputs(seed, b=2, l=40, d=4, n=8):
    """Inputs in the ranges of the mamba_ssm test: A = -0.5 U - 0.05, dt = 0.5 U + 0.01."""
    r = np.random.default_rng(seed)
    return dict(
        x=r.standard_normal((b, l, d)),
        dt=0.5 * r.random((b, l, d)) + 0.01,
        A=-(0.5 * r.random((d, n)) + 0.05),
        B=r.standard_normal((b, l, n)),
        C=r.standard_normal((b, l, n)),
        D=r.standard_normal(d),
        h0=r.standard_normal((b, d, n)),
    )


_scan = jax.jit(selective_scan, static_argnames=("method", "chunk"))


def _run(inp, method, chunk=16, dtype=jnp.float32):
    args = {k: jnp.asarray(v, dtype) for k, v in inp.items()}
    return _scan(
        args["x"],
        args["dt"],
        args["A"],
        args["B"],
        args["C"],
        args["D"],
        method=method,
        chunk=chunk,
        h0=args["h0"],
    )


def test_oracle_adjoint_matches_finite_differences():
    # The gradient oracle is itself checked: central differences in float64.
    inp = make_inputs(0, b=1, l=9, d=2, n=3)
    gy = np.random.default_rng(1).standard_normal((1, 9, 2))
    grads = oracle_grads(**inp, gy=gy)
    r = np.random.default_rng(2)
    dirs = {k: r.standard_normal(v.shape) for k, v in inp.items()}
    eps = 1e-6

    def loss(s):
        p = {k: inp[k] + s * dirs[k] for k in inp}
        return (oracle_forward(**p)[0] * gy).sum()

    fd = (loss(eps) - loss(-eps)) / (2 * eps)
    an = sum((grads[k] * dirs[k]).sum() for k in inp)
    np.testing.assert_allclose(an, fd, rtol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_forward_matches_float64_oracle(method):
    inp = make_inputs(3)  # l = 40 is not a multiple of chunk 16: exercises the padding
    y_ref, hs = oracle_forward(**inp)
    y, h = _run(inp, method)
    assert y.dtype == jnp.float32 and h.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), y_ref, **FP32)
    np.testing.assert_allclose(np.asarray(h), hs[-1], **FP32)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_match_float64_adjoint(method):
    inp = make_inputs(4)
    gy = np.random.default_rng(5).standard_normal(inp["x"].shape)
    ref = oracle_grads(**inp, gy=gy)
    args = {k: jnp.asarray(v, jnp.float32) for k, v in inp.items()}

    def loss(a):
        y, _ = selective_scan(
            a["x"], a["dt"], a["A"], a["B"], a["C"], a["D"], method=method, chunk=16, h0=a["h0"]
        )
        return jnp.sum(y * jnp.asarray(gy, jnp.float32))

    grads = jax.jit(jax.grad(loss))(args)
    for k in ref:
        np.testing.assert_allclose(np.asarray(grads[k]), ref[k], rtol=1e-3, atol=1e-3, err_msg=k)


def test_backends_agree_with_each_other():
    inp = make_inputs(6, l=64)
    outs = [_run(inp, m, chunk=32) for m in METHODS]
    for y, h in outs[1:]:
        # All fp32 with the same operations up to reassociation: 1e-5 relative.
        np.testing.assert_allclose(np.asarray(y), np.asarray(outs[0][0]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(h), np.asarray(outs[0][1]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["linear", "chunked"])
def test_bf16_inputs_use_fp32_state(method):
    inp = make_inputs(7)
    # The oracle sees the same bf16-rounded inputs, so only the arithmetic differs.
    rounded = {
        k: np.asarray(jnp.asarray(v, jnp.bfloat16).astype(jnp.float32), np.float64)
        for k, v in inp.items()
    }
    y_ref, hs = oracle_forward(**rounded)
    y, h = _run(inp, method, dtype=jnp.bfloat16)
    assert y.dtype == jnp.bfloat16 and h.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float64), y_ref, **BF16)
    np.testing.assert_allclose(np.asarray(h), hs[-1], **FP32)


def _grad_temp_bytes(method, l, d=32, n=16):
    """Compiled scratch memory of the fused forward+backward pass (no execution)."""
    x = jax.ShapeDtypeStruct((1, l, d), jnp.float32)
    a = jax.ShapeDtypeStruct((d, n), jnp.float32)
    bc = jax.ShapeDtypeStruct((1, l, n), jnp.float32)

    def f(x, dt, A, B, C):
        return jnp.sum(selective_scan(x, dt, A, B, C, method=method, chunk=64)[0])

    g = jax.jit(jax.grad(f, argnums=(0, 1, 2, 3, 4)))
    return g.lower(x, x, a, bc, bc).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_chunked_memory_does_not_grow_with_the_full_state():
    # One (1, L, 32, 16) fp32 state tensor is 2 MB at L = 1024 and grows by 6 MB up to
    # L = 4096. The associative scan keeps several such tensors for its backward pass
    # (control, measured 27 MB at L = 1024); the chunked scan keeps one (B, D, N) state per
    # chunk plus the chunk it works on, so its scratch grows only with the (L, D + N)
    # inputs (measured +0.1 MB from 1024 to 4096).
    full = 1024 * 32 * 16 * 4
    assert _grad_temp_bytes("assoc", 1024) > 2 * full
    growth_chunked = _grad_temp_bytes("chunked", 4096) - _grad_temp_bytes("chunked", 1024)
    assert growth_chunked < 0.1 * 3 * full


def test_bad_shapes_raise():
    inp = make_inputs(8)
    with pytest.raises(ValueError, match="A shape"):
        selective_scan(
            jnp.asarray(inp["x"]),
            jnp.asarray(inp["dt"]),
            jnp.zeros((3, 8)),
            jnp.asarray(inp["B"]),
            jnp.asarray(inp["C"]),
        )
    with pytest.raises(ValueError, match="unknown scan method"):
        _run(inp, "fft")
