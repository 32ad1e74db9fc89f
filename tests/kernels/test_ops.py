"""The reference (ground truth and CPU fallback) and the public op that falls back to it."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.flash_attention import ops
from kernels.flash_attention.reference import attention_reference, segments_from_padding
from tests.kernels.cases import rng_for
from tests.kernels.numpy_oracle import attention_forward


def _inputs(rng, b=2, lq=37, lk=53, h=4, hkv=2, d=32):
    return (
        rng.standard_normal((b, lq, h, d)).astype(np.float32),
        rng.standard_normal((b, lk, hkv, d)).astype(np.float32),
        rng.standard_normal((b, lk, hkv, d)).astype(np.float32),
    )


@pytest.mark.parametrize("causal", [False, True])
def test_reference_matches_oracle_and_jax_nn(causal, request):
    seed, rng = rng_for(request)
    msg = f"causal={causal} seed={seed}"
    q, k, v = _inputs(rng)
    q_seg = np.sort(rng.integers(0, 3, (2, 37)), axis=1).astype(np.int32)
    kv_seg = np.sort(rng.integers(0, 3, (2, 53)), axis=1).astype(np.int32)
    ref = jax.jit(
        lambda *a: attention_reference(
            *a, causal=causal, q_segment_ids=q_seg, kv_segment_ids=kv_seg, return_lse=True
        )
    )
    out, lse = ref(q, k, v)
    o64, lse64 = attention_forward(q, k, v, causal=causal, q_seg=q_seg, kv_seg=kv_seg)
    # float32 with HIGHEST-precision einsums vs float64: ~sqrt(53) * eps32 * |terms ~ 10|.
    np.testing.assert_allclose(np.asarray(out), o64, atol=1e-5, rtol=0, err_msg=msg)
    fin = np.isfinite(lse64)
    np.testing.assert_array_equal(np.isinf(np.asarray(lse)), ~fin, err_msg=msg)
    np.testing.assert_allclose(np.asarray(lse)[fin], lse64[fin], atol=1e-5, rtol=0, err_msg=msg)
    # Against jax.nn (xla) without masks: the same maths in the same float32, so only the
    # summation order differs (observed ~1e-7; 1e-6 is a few float32 ulps at |out| ~ 1).
    plain = jax.jit(lambda *a: attention_reference(*a, causal=causal))(q, k[:, :37], v[:, :37])
    nn = jax.jit(
        lambda *a: jax.nn.dot_product_attention(*a, is_causal=causal, implementation="xla")
    )(q, k[:, :37], v[:, :37])
    np.testing.assert_allclose(np.asarray(plain), np.asarray(nn), atol=1e-6, rtol=0, err_msg=msg)


def test_padding_becomes_segments():
    pad = jnp.array([[True, True, False], [False, False, False]])
    q_seg, kv_seg = segments_from_padding(pad, None, None, q_len=2)
    np.testing.assert_array_equal(q_seg, np.zeros((2, 2)))
    np.testing.assert_array_equal(kv_seg, [[0, 0, -1], [-1, -1, -1]])
    seg = jnp.array([[3, 4, 4], [1, 1, 2]])
    _, kv_seg = segments_from_padding(pad, seg[:, :2], seg, q_len=2)
    # A padded key gets one less than the smallest query id of its row: no query carries it.
    np.testing.assert_array_equal(kv_seg, [[3, 4, 2], [0, 0, 0]])
    with pytest.raises(ValueError, match="both q_segment_ids and kv_segment_ids"):
        segments_from_padding(None, seg, None, q_len=3)


def test_op_falls_back_to_reference_with_one_log(caplog, monkeypatch, request):
    monkeypatch.setattr(ops, "_logged", set())  # forget reasons earlier tests logged
    seed, rng = rng_for(request)
    q, k, v = _inputs(rng)
    expected = jax.jit(lambda *a: attention_reference(*a, causal=True))(q, k, v)
    with caplog.at_level(logging.WARNING, logger=ops.__name__):
        for _ in range(3):  # three separate traces, each deciding the fallback again
            f = jax.jit(lambda *a: ops.flash_attention(*a, causal=True, impl="triton"))
            out = f(q, k, v)  # no GPU here
            np.testing.assert_array_equal(
                np.asarray(out), np.asarray(expected), err_msg=f"seed={seed}"
            )
    msgs = [r.getMessage() for r in caplog.records if r.name == ops.__name__]
    if jax.default_backend() == "cpu":  # once per reason per process, not once per trace
        assert msgs == [
            "flash_attention: triton unavailable: triton has no lowering for backend 'cpu'; "
            "using the reference"
        ]
    ref = jax.jit(lambda *a: ops.flash_attention(*a, causal=True, impl="reference"))(q, k, v)
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(expected))
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        ops.flash_attention(q, k, v, impl="cuda")
    # one "auto" in the code base: jaxfm.nn.attention's
    with pytest.raises(ValueError, match="unknown impl 'auto'.*jaxfm.nn.attention"):
        ops.flash_attention(q, k, v, impl="auto")
    assert "head_dim 512" in ops.fallback_reason("pallas", *(jnp.zeros((1, 4, 1, 512)),) * 3)
