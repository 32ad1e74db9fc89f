"""The attention entry point: numerics of every path on CPU, fallbacks, gradients, axial folding."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.nn import attention as attn
from kernels.flash_attention import ops
from tests.kernels.cases import rng_for
from tests.kernels.numpy_oracle import attention_backward, attention_forward

# float32 paths against the float64 oracle: both accumulate <= ~100 products per entry in
# float32 (eps 1.2e-7) with |terms| ~ 10, so a few 1e-6 is the expected error; 2e-5 leaves
# margin without hiding a real bug (a wrong mask or scale errs by > 1e-2 on these inputs).
TOL = 2e-5


def _qkv(rng, b=2, lq=33, lk=33, h=4, hkv=2, d=16):
    q = rng.standard_normal((b, lq, h, d)).astype(np.float32)
    k = rng.standard_normal((b, lk, hkv, d)).astype(np.float32)
    v = rng.standard_normal((b, lk, hkv, d)).astype(np.float32)
    return q, k, v


def _np_attention_with_bias(q, k, v, bias, mask, causal):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    g = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, g, 2), np.repeat(v, g, 2)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1]) + bias
    vis = np.broadcast_to(mask, s.shape)
    if causal:
        vis = vis & np.tril(np.ones(s.shape[-2:], bool))
    s = np.where(vis, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


@pytest.fixture
def fresh_log_once(monkeypatch):
    """Forget the reasons earlier tests in this process logged, so this test sees them all."""
    monkeypatch.setattr(ops, "_logged", set())


def test_xla_bias_and_mask_match_numpy(request):
    seed, rng = rng_for(request)
    q, k, v = _qkv(rng)
    bias = rng.standard_normal((1, 4, 33, 33)).astype(np.float32)
    mask = rng.random((2, 1, 33, 33)) < 0.7
    mask[..., 0] = True  # every row sees a key, so the numpy softmax is defined
    f = jax.jit(lambda *a: attn.dot_product_attention(*a[:3], bias=a[3], mask=a[4], causal=True))
    out = f(q, k, v, bias, mask)
    ref = _np_attention_with_bias(q, k, v, bias, mask, True)
    np.testing.assert_allclose(np.asarray(out), ref, atol=TOL, rtol=0, err_msg=f"seed={seed}")


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_segments_and_padding_match_oracle(impl, request):
    """Packed segments + key padding, incl. a batch element with no valid key (rows -> 0)."""
    seed, rng = rng_for(request)
    q, k, v = _qkv(rng, lq=40, lk=40)
    seg = np.sort(rng.integers(0, 3, (2, 40)), axis=1).astype(np.int32)
    pad = np.arange(40)[None] < np.array([[int(rng.integers(1, 41))], [0]])
    f = jax.jit(
        lambda q, k, v, seg, pad: attn.dot_product_attention(
            q, k, v, causal=True, segment_ids=seg, key_padding_mask=pad, impl=impl
        )
    )
    out = f(q, k, v, seg, pad)
    kv_seg = np.where(pad, seg, -1)
    ref, _ = attention_forward(q, k, v, causal=True, q_seg=seg, kv_seg=kv_seg)
    msg = f"impl={impl} seed={seed}"
    np.testing.assert_allclose(np.asarray(out), ref, atol=TOL, rtol=0, err_msg=msg)
    assert np.all(np.asarray(out)[1] == 0), msg


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_grad_through_entry_point(impl, request):
    """jax.grad through dot_product_attention (GQA, causal, cross segments, Lq != Lk)."""
    seed, rng = rng_for(request)
    q, k, v = _qkv(rng, b=1, lq=24, lk=40, h=4, hkv=1)
    q_seg = np.sort(rng.integers(0, 2, (1, 24)), axis=1).astype(np.int32)
    kv_seg = np.sort(rng.integers(0, 2, (1, 40)), axis=1).astype(np.int32)
    w = rng.standard_normal(q.shape).astype(np.float32)

    def loss(q, k, v):
        out = attn.dot_product_attention(
            q, k, v, causal=True, segment_ids=(q_seg, kv_seg), impl=impl
        )
        return jnp.sum(out * w)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    refs = attention_backward(q, k, v, w, causal=True, q_seg=q_seg, kv_seg=kv_seg)
    for name, g, r in zip("qkv", grads, refs):
        np.testing.assert_allclose(
            np.asarray(g), r, atol=TOL, rtol=0, err_msg=f"d{name} impl={impl} seed={seed}"
        )


def test_fallbacks_log_once_per_reason(caplog, fresh_log_once, request):
    if jax.default_backend() != "cpu":
        pytest.skip("the expected reasons below are the CPU ones")
    seed, rng = rng_for(request)
    q, k, v = _qkv(rng)
    mask = np.ones((1, 1, 33, 33), bool)
    ref = attn.dot_product_attention(q, k, v, impl="xla")
    q, k, v, ref = map(np.asarray, (q, k, v, ref))
    with caplog.at_level(logging.INFO, logger=attn.__name__):
        for _ in range(3):
            for impl in ("triton", "cudnn"):  # no GPU here: both fall back to xla
                out = attn.dot_product_attention(q, k, v, impl=impl)
                np.testing.assert_array_equal(np.asarray(out), ref, err_msg=f"seed={seed}")
            # The fused kernels take no arbitrary mask: fall back, still correct.
            out = attn.dot_product_attention(q, k, v, mask=mask, impl="pallas")
            np.testing.assert_array_equal(np.asarray(out), ref, err_msg=f"seed={seed}")
    records = [r for r in caplog.records if r.name == attn.__name__]
    # Exactly one line per reason (three calls each), at WARNING since each impl was named.
    # The reasons are the ones that hold for a lowering aimed at CUDA: with jax_triton
    # installed, triton would serve it and says so at INFO (it runs only there).
    triton = ops.fallback_reason("triton", q, k, v, backend="gpu")
    expected = {
        "attention impl=cudnn unavailable: cudnn takes bf16/fp16 only (got float32); "
        "falling back": logging.WARNING,
        "attention impl=pallas unavailable: pallas takes no arbitrary mask (use segment_ids "
        "or key_padding_mask); falling back": logging.WARNING,
        (
            f"attention impl=triton unavailable: {triton}; falling back"
            if triton
            else "attention impl=triton runs where the call is lowered for CUDA; xla on 'cpu'"
        ): logging.WARNING if triton else logging.INFO,
    }
    assert {r.getMessage(): r.levelno for r in records} == expected
    assert len(records) == len(expected)


def test_auto_is_xla_on_cpu_and_pallas_is_a_kernel():
    q, k, v = _qkv(np.random.default_rng(0), lq=16, lk=16)
    auto = str(jax.make_jaxpr(lambda *a: attn.dot_product_attention(*a))(q, k, v))
    pallas = str(jax.make_jaxpr(lambda *a: attn.dot_product_attention(*a, impl="pallas"))(q, k, v))
    assert "pallas_call" not in auto
    assert "pallas_call" in pallas


def test_bad_arguments_raise():
    q, k, v = _qkv(np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown attention impl 'flash'"):
        attn.dot_product_attention(q, k, v, impl="flash")
    with pytest.raises(ValueError, match="multiple of kv heads"):
        attn.dot_product_attention(q, k[:, :, :1].repeat(3, 2), v[:, :, :1].repeat(3, 2))
    with pytest.raises(ValueError, match="q_len == kv_len"):
        attn.dot_product_attention(q, k[:, :5], v[:, :5], segment_ids=np.zeros((2, 33), int))
    x = np.zeros((2, 3, 4, 5, 2, 8), np.float32)
    with pytest.raises(ValueError, match="axis=4 is not a token axis"):
        attn.axial_attention(x, x, x, axis=4)


@pytest.mark.parametrize("axis", [1, 2, -3])
def test_axial_attention_matches_per_axis_oracle(axis, request):
    """(B, T, H, W, heads, D) tokens: attend along one axis, others are independent batches."""
    seed, rng = rng_for(request)
    b, t, hh, ww, h, hkv, d = 2, 3, 5, 6, 4, 2, 8
    q = rng.standard_normal((b, t, hh, ww, h, d)).astype(np.float32)
    k = rng.standard_normal((b, t, hh, ww, hkv, d)).astype(np.float32)
    v = rng.standard_normal((b, t, hh, ww, hkv, d)).astype(np.float32)
    length = q.shape[axis]
    bias = rng.standard_normal((h, length, length)).astype(np.float32)
    causal = axis == 1  # causal in time, full in space
    f = jax.jit(lambda *a: attn.axial_attention(*a[:3], axis=axis, bias=a[3], causal=causal))
    out = np.asarray(f(q, k, v, bias))
    # Oracle: move the axis next to heads and loop over every other token position.
    ax = axis % q.ndim
    qm, km, vm = (np.moveaxis(x, ax, -3) for x in (q, k, v))
    om = np.moveaxis(out, ax, -3)
    mask = np.ones((1, 1, length, length), bool)
    for idx in np.ndindex(*qm.shape[1:-3]):
        sl = (slice(None), *idx)
        ref = _np_attention_with_bias(qm[sl], km[sl], vm[sl], bias[None], mask, causal)
        np.testing.assert_allclose(
            om[sl], ref, atol=TOL, rtol=0, err_msg=f"axis={axis} index={idx} seed={seed}"
        )
