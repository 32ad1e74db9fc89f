"""Raw Triton flash-attention kernels under TRITON_INTERPRET=1, against the float64 oracle.

Run by ``make test-triton`` (``kernels/flash_attention/triton_interpret_env.sh``) in a Python
3.11 venv with CPU torch and triton; this module never imports jax, and the main suite deselects
the ``triton_interpret`` marker (and skips the module where torch/triton are missing).

Same protocol as the Pallas tests: fresh random inputs (seed in the failure message), every
output buffer pre-filled with NaN, forward + lse + dq/dk/dv compared with the float64 NumPy
oracle; tolerance = 2 x the error of naive same-dtype attention (torch autograd in that dtype)
plus the per-dtype floor of ``numpy_oracle.ERROR_FLOOR``.
"""

from __future__ import annotations

import dataclasses
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
from tests.kernels.numpy_oracle import (  # noqa: E402
    ERROR_FLOOR,
    attention_backward,
    attention_forward,
    max_abs_err,
)

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Case:
    dtype: str
    b: int
    lq: int
    lk: int
    h: int
    hkv: int
    d: int
    causal: bool
    masks: str = "none"  # none | segments | padding | both
    block_m: int = 32
    block_n: int = 32

    def __str__(self):
        return (
            f"{self.dtype}-b{self.b}-q{self.lq}-k{self.lk}-h{self.h}/{self.hkv}-d{self.d}"
            f"-{'causal' if self.causal else 'full'}-{self.masks}-m{self.block_m}n{self.block_n}"
        )


def _masks(case: Case, rng):
    if case.masks == "none":
        return None, None
    q_seg = np.zeros((case.b, case.lq), np.int32)
    kv_seg = np.zeros((case.b, case.lk), np.int32)
    if case.masks in ("segments", "both"):
        q_seg = np.sort(rng.integers(0, 3, (case.b, case.lq)), axis=1).astype(np.int32)
        kv_seg = (
            q_seg.copy()
            if case.lq == case.lk
            else np.sort(rng.integers(0, 3, (case.b, case.lk)), axis=1).astype(np.int32)
        )
    if case.masks in ("padding", "both"):
        lengths = rng.integers(1, case.lk + 1, case.b)
        if case.b > 1:
            lengths[-1] = 0  # a batch element with no valid key: rows must be 0, not NaN
        kv_seg = np.where(np.arange(case.lk)[None] < lengths[:, None], kv_seg, -1)
        kv_seg = kv_seg.astype(np.int32)
    return q_seg, kv_seg


def _launch(case: Case, q, k, v, do, q_seg, kv_seg):
    """Forward, preprocess, dq and dk/dv kernels with NaN-poisoned outputs."""
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
        BLOCK_M=case.block_m,
        BLOCK_N=case.block_n,
        CAUSAL=case.causal,
        HAS_SEG=has_seg,
        DOT_PREC=tk.dot_precision(case.dtype),
        UPCAST_DOT=tk.upcast_dot(case.dtype),
    )
    o = torch.full_like(q, nan)
    lse = torch.full((b, h, lq), nan, dtype=torch.float32)
    grid_q = (triton.cdiv(lq, case.block_m), b * h)
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
        BLOCK_M=case.block_m,
    )
    dq = torch.full_like(q, nan)
    tk.flash_bwd_dq_kernel[grid_q](q, k, v, qs, ks, do, lse, delta, lq, lk, scale, dq, **meta)
    dk_h = torch.full((b, lk, h, d), nan, dtype=torch.float32)
    dv_h = torch.full((b, lk, h, d), nan, dtype=torch.float32)
    grid_k = (triton.cdiv(lk, case.block_n), b * h)
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
    Case("float32", 1, 100, 100, 4, 2, 64, True, "none", 32, 16),
    Case("float32", 2, 70, 130, 2, 2, 128, False, "segments"),
    Case("bfloat16", 2, 96, 96, 4, 1, 64, True, "both"),
    Case("float16", 2, 80, 80, 2, 2, 128, False, "padding"),
    Case("float32", 1, 40, 40, 2, 1, 256, True, "none", 16, 16),
    Case("float32", 1, 50, 50, 2, 2, 72, False, "none", 16, 32),  # D not a power of two
    Case("bfloat16", 1, 48, 80, 2, 1, 64, True, "segments", 16, 32),  # causal, Lq != Lk
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_triton_kernels_match_oracle(case):
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    dt = _TORCH_DTYPES[case.dtype]

    def draw(*shape):
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(dt)

    q = draw(case.b, case.lq, case.h, case.d)
    k = draw(case.b, case.lk, case.hkv, case.d)
    v = draw(case.b, case.lk, case.hkv, case.d)
    do = draw(case.b, case.lq, case.h, case.d)
    q_seg, kv_seg = _masks(case, rng)
    out, lse, grads = _launch(case, q, k, v, do, q_seg, kv_seg)
    n_out, n_grads = _naive(case, q, k, v, do, q_seg, kv_seg)

    qn, kn, vn, don = map(_to_np, (q, k, v, do))
    o_ref, lse_ref = attention_forward(qn, kn, vn, causal=case.causal, q_seg=q_seg, kv_seg=kv_seg)
    g_ref = attention_backward(qn, kn, vn, don, causal=case.causal, q_seg=q_seg, kv_seg=kv_seg)
    floor = ERROR_FLOOR[case.dtype]
    msg = f"case {case} seed {seed}"
    assert out.dtype == dt
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
    if case.masks in ("padding", "both") and case.b > 1:
        assert torch.all(out[-1] == 0), "fully masked rows must be exactly 0"
