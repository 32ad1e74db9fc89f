"""One oracle comparison for every flash-attention kernel test (Pallas, Mosaic GPU).

:func:`check_against_oracle` draws a case's random inputs from its test's seed, runs the kernel
forward and backward under ``jit``, and compares out, lse, dq, dk, dv (and dbias) with the
float64 NumPy oracle. Tolerance: FlashAttention's rule, error <= 2 x the error of naive
attention computed in the same dtype, plus a per-dtype floor (see numpy_oracle).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tests.kernels.cases import Case, draw_inputs, fully_masked_batch, rng_for, segment_masks
from tests.kernels.numpy_oracle import (
    ERROR_FLOOR,
    attention_backward,
    attention_forward,
    max_abs_err,
)

#: Compiling at optimisation level 0 halves interpret-mode test time and changes no numerics
#: we test (float ops are not reassociated at any level on CPU).
FAST_COMPILE = {"xla_backend_optimization_level": 0}

#: ``attention(q, k, v, q_seg, kv_seg, bias) -> (out, lse)``, differentiable in q, k, v, bias.
Attention = Callable[..., tuple[jax.Array, jax.Array]]


def _naive(q, k, v, causal, vis_extra, bias=None):
    """Attention with every op in the input dtype: the "same-precision naive" baseline."""
    dt = q.dtype
    group = q.shape[2] // k.shape[2]
    kr, vr = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    s = jnp.einsum("bqhd,bkhd->bhqk", q, kr) * jnp.asarray(1.0 / np.sqrt(q.shape[-1]), dt)
    if bias is not None:
        s = s + bias.astype(dt)
    vis = jnp.ones((1, 1, q.shape[1], k.shape[1]), bool)
    if causal:
        vis = vis & jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))[None, None]
    if vis_extra is not None:
        vis = vis & vis_extra
    s = jnp.where(vis, s, jnp.asarray(-jnp.inf, dt))
    m = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), dt))
    e = jnp.exp(s - m)
    l = jnp.sum(e, axis=-1, keepdims=True)
    p = e / jnp.where(l == 0, jnp.ones((), dt), l)
    return jnp.einsum("bhqk,bkhd->bqhd", p, vr)


def check_against_oracle(case: Case, request, attention: Attention, bias_shape=None) -> None:
    """``bias_shape``: (1|B, 1|H) of a random additive bias, differentiated too."""
    seed, rng = rng_for(request)
    dt = jnp.dtype(case.dtype)
    q, k, v, do = (jnp.asarray(x, dt) for x in draw_inputs(case, rng))
    q_seg, kv_seg = segment_masks(case, rng)
    segs = (None, None) if q_seg is None else (jnp.asarray(q_seg), jnp.asarray(kv_seg))
    bias = None
    if bias_shape is not None:
        bias = jnp.asarray(2 * rng.standard_normal((*bias_shape, case.lq, case.lk)), jnp.float32)

    def kernel(q, k, v, do, *bias):
        def f(q, k, v, *bias):
            return attention(q, k, v, segs[0], segs[1], bias[0] if bias else None)

        (out, lse), vjp = jax.vjp(f, q, k, v, *bias)
        return out, lse, vjp((do, jnp.zeros_like(lse)))

    vis = (
        None if q_seg is None else jnp.asarray(q_seg[:, None, :, None] == kv_seg[:, None, None, :])
    )

    def naive(q, k, v, do, *bias):
        out, vjp = jax.vjp(
            lambda q, k, v, *b: _naive(q, k, v, case.causal, vis, *b), q, k, v, *bias
        )
        return out, vjp(do)

    args = (q, k, v, do) + (() if bias is None else (bias,))
    out, lse, grads = jax.jit(kernel).lower(*args).compile(FAST_COMPILE)(*args)
    n_out, n_grads = jax.jit(naive).lower(*args).compile(FAST_COMPILE)(*args)

    ref_kw = dict(causal=case.causal, q_seg=q_seg, kv_seg=kv_seg, bias=bias)
    o_ref, lse_ref = attention_forward(q, k, v, **ref_kw)
    g_ref = attention_backward(q, k, v, do, **ref_kw)
    floor = ERROR_FLOOR[case.dtype]
    msg = f"case {case} bias {bias_shape} seed {seed}"

    assert out.dtype == dt and out.shape == q.shape, msg
    if bias is not None:
        assert grads[3].shape == bias.shape and grads[3].dtype == bias.dtype, msg
    for name, got, naive_got, ref in [
        ("out", out, n_out, o_ref),
        *zip(("dq", "dk", "dv", "dbias"), grads, n_grads, g_ref),
    ]:
        err = max_abs_err(got, ref)
        err_naive = max_abs_err(naive_got, ref)
        assert err <= 2 * err_naive + floor, f"{name}: err {err:.3g} naive {err_naive:.3g} {msg}"
    # lse: float32 in every dtype; +inf exactly on rows that see no key.
    lse = np.asarray(lse, np.float64)
    assert np.array_equal(np.isinf(lse), np.isinf(lse_ref)), msg
    fin = np.isfinite(lse_ref)
    # Same float32 accumulation argument as ERROR_FLOOR["float32"]; lse ~ log(L) + max logit.
    assert max_abs_err(lse[fin], lse_ref[fin]) <= 1e-4, msg
    if fully_masked_batch(case):
        assert np.all(np.asarray(out[-1]) == 0), f"fully masked rows must be exactly 0; {msg}"
