"""Raw Triton flash-attention kernels under TRITON_INTERPRET=1, against the float64 oracle.

Run by ``make test-triton`` (``kernels/flash_attention/triton_interpret_env.sh``) in a Python
3.11 venv with CPU torch and triton; this module never imports jax, and the main suite deselects
the ``triton_interpret`` marker (and skips the module where torch/triton are missing).

Same protocol as the Pallas tests: random inputs from a seed derived from the test id (seed in
the failure message), every
output buffer pre-filled with NaN, forward + lse + dq/dk/dv compared with the float64 NumPy
oracle; tolerance = 2 x the error of naive same-dtype attention (torch autograd in that dtype)
plus the per-dtype floor of ``numpy_oracle.ERROR_FLOOR``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

pytestmark = pytest.mark.triton_interpret

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (run `make test-triton`)", allow_module_level=True)
torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

from kernels.flash_attention import triton_kernels as tk  # noqa: E402
from tests.kernels.cases import (  # noqa: E402
    Case,
    draw_inputs,
    fully_masked_batch,
    rng_for,
    segment_masks,
)
from tests.kernels.numpy_oracle import (  # noqa: E402
    ERROR_FLOOR,
    attention_backward,
    attention_forward,
    max_abs_err,
)

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _tiles(case: Case) -> tuple[int, int]:
    return (32, 32) if case.blocks is None else case.blocks


def _launch(case: Case, q, k, v, do, q_seg, kv_seg):
    """Forward, preprocess, dq and dk/dv kernels with NaN-poisoned outputs."""
    block_m, block_n = _tiles(case)
    nan = float("nan")
    b, lq, h, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(d)
    has_seg = q_seg is not None
    dummy = torch.zeros(1, dtype=torch.int32)
    qs = torch.from_numpy(q_seg) if has_seg else dummy
    ks = torch.from_numpy(kv_seg) if has_seg else dummy
    meta = dict(
        NUM_HEADS=h,
        GROUP=h // hkv,
        head_dim=d,
        HEAD_DIM=tk.head_dim_tile(d),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        CAUSAL=case.causal,
        HAS_SEG=has_seg,
        DOT_PREC=tk.dot_precision(case.dtype),
        UPCAST_DOT=tk.upcast_dot(case.dtype),
    )
    o = torch.full_like(q, nan)
    lse = torch.full((b, h, lq), nan, dtype=torch.float32)
    grid_q = (triton.cdiv(lq, block_m), b * h)
    tk.flash_fwd_kernel[grid_q](q, k, v, qs, ks, lq, lk, scale, o, lse, **meta)

    delta = torch.full((b, h, lq), nan, dtype=torch.float32)
    tk.flash_bwd_preprocess_kernel[grid_q](
        o,
        do,
        lq,
        delta,
        NUM_HEADS=h,
        head_dim=d,
        HEAD_DIM=tk.head_dim_tile(d),
        BLOCK_M=block_m,
    )
    dq = torch.full_like(q, nan)
    tk.flash_bwd_dq_kernel[grid_q](q, k, v, qs, ks, do, lse, delta, lq, lk, scale, dq, **meta)
    dk_h = torch.full((b, lk, h, d), nan, dtype=torch.float32)
    dv_h = torch.full((b, lk, h, d), nan, dtype=torch.float32)
    grid_k = (triton.cdiv(lk, block_n), b * h)
    tk.flash_bwd_dkdv_kernel[grid_k](
        q, k, v, qs, ks, do, lse, delta, lq, lk, scale, dk_h, dv_h, **meta
    )
    group = h // hkv
    dk = dk_h.reshape(b, lk, hkv, group, d).sum(3).to(k.dtype)
    dv = dv_h.reshape(b, lk, hkv, group, d).sum(3).to(v.dtype)
    return o, lse, (dq, dk, dv)


def _naive(case: Case, q, k, v, do, q_seg, kv_seg):
    """Attention with every op in the input dtype (torch autograd): the 2x baseline."""
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    group = case.h // case.hkv
    kr, vr = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, kr) * (1.0 / math.sqrt(case.d))
    vis = torch.ones(1, 1, case.lq, case.lk, dtype=torch.bool)
    if case.causal:
        vis = vis & torch.ones(case.lq, case.lk, dtype=torch.bool).tril()
    if q_seg is not None:
        vis = vis & torch.from_numpy(q_seg[:, None, :, None] == kv_seg[:, None, None, :])
    s = s.masked_fill(~vis, float("-inf"))
    m = s.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    l = e.sum(-1, keepdim=True)
    p = e / torch.where(l == 0, torch.ones_like(l), l)
    out = torch.einsum("bhqk,bkhd->bqhd", p, vr)
    out.backward(do)
    return out.detach(), (q.grad, k.grad, v.grad)


def _to_np(x):
    return x.detach().to(torch.float64).numpy()


CASES = [
    Case("float32", 1, 100, 100, 4, 2, 64, True, "none", (32, 16)),
    Case("float32", 2, 70, 130, 2, 2, 128, False, "segments"),
    Case("bfloat16", 2, 96, 96, 4, 1, 64, True, "both"),
    Case("float16", 2, 80, 80, 2, 2, 128, False, "padding"),
    Case("float32", 1, 40, 40, 2, 1, 256, True, "none", (16, 16)),
    Case("float32", 1, 50, 50, 2, 2, 72, False, "none", (16, 32)),  # D not a power of two
    Case("bfloat16", 1, 48, 80, 2, 1, 64, True, "segments", (16, 32)),  # causal, Lq != Lk
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_triton_kernels_match_oracle(case, request):
    seed, rng = rng_for(request)
    dt = _TORCH_DTYPES[case.dtype]
    q, k, v, do = (torch.from_numpy(x).to(dt) for x in draw_inputs(case, rng))
    q_seg, kv_seg = segment_masks(case, rng)
    out, lse, grads = _launch(case, q, k, v, do, q_seg, kv_seg)
    n_out, n_grads = _naive(case, q, k, v, do, q_seg, kv_seg)

    qn, kn, vn, don = map(_to_np, (q, k, v, do))
    o_ref, lse_ref = attention_forward(qn, kn, vn, causal=case.causal, q_seg=q_seg, kv_seg=kv_seg)
    g_ref = attention_backward(qn, kn, vn, don, causal=case.causal, q_seg=q_seg, kv_seg=kv_seg)
    floor = ERROR_FLOOR[case.dtype]
    msg = f"case {case} seed {seed}"
    assert out.dtype == dt, msg
    for name, got, naive_got, ref in [
        ("out", out, n_out, o_ref),
        *zip(("dq", "dk", "dv"), grads, n_grads, g_ref),
    ]:
        err = max_abs_err(_to_np(got), ref)
        err_naive = max_abs_err(_to_np(naive_got), ref)
        assert err <= 2 * err_naive + floor, f"{name}: err {err:.3g} naive {err_naive:.3g} {msg}"
    lse = _to_np(lse)
    assert np.array_equal(np.isinf(lse), np.isinf(lse_ref)), msg
    fin = np.isfinite(lse_ref)
    assert max_abs_err(lse[fin], lse_ref[fin]) <= 1e-4, msg  # float32 accumulation, see oracle
    if fully_masked_batch(case):
        assert torch.all(out[-1] == 0), f"fully masked rows must be exactly 0; {msg}"
