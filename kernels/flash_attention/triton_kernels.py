"""Raw Triton flash-attention kernels (FlashAttention-2 forward and backward). No jax import.

This module is importable without jax so the kernels can be tested under the Triton
interpreter (``TRITON_INTERPRET=1``) on CPU torch tensors; ``triton.py`` launches the same
kernels from JAX through ``jax_triton.triton_call``.

Algorithm: see ``pallas.py`` (identical maths, natural-log ``lse``). Differences that follow from
Triton's programming model:

* Ragged lengths and head dims are handled by masked loads/stores (``other=0``), not by padding:
  ``HEAD_DIM`` is the power-of-two tile width, ``head_dim`` the true D.
* Every kernel takes its outputs last (after all inputs and runtime scalars), the order
  ``jax_triton.triton_call`` appends output pointers in.
* Arrays are contiguous (B, L, H, D) row-major, so offsets follow from (L, H, D) and no stride
  arguments are needed; lse and delta are (B, H, Lq) float32.
* GQA: program (b, h) reads kv head ``h // group``. dk/dv are written per *query* head (float32,
  (B, Lk, H, D)) and summed over each group by the caller: no atomics.
* ``UPCAST_DOT``: the Triton 3.9 *interpreter* returns garbage from ``tl.dot`` on bf16 operands
  (observed: errors ~1e10 on a 16x16 product, while fp16/fp32 are exact). Under the interpreter
  bf16 tiles are therefore upcast to float32 before ``tl.dot`` (IEEE). This is numerically what
  the GPU does anyway (a bf16 x bf16 product is exact in float32 and the MMA accumulates in
  float32); on a GPU the flag is off and the bf16 tensor-core path runs.
* Segment ids (``HAS_SEG``): int32 (B, Lq) and (B, Lk); out-of-range rows load ids that never
  match (-2 for queries, -3 for keys).

Grids: forward and dq ``(cdiv(Lq, BLOCK_M), B * H)``; dk/dv ``(cdiv(Lk, BLOCK_N), B * H)``;
preprocess ``(cdiv(Lq, BLOCK_M), B * H)``.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

__all__ = [
    "flash_fwd_kernel",
    "flash_bwd_preprocess_kernel",
    "flash_bwd_dq_kernel",
    "flash_bwd_dkdv_kernel",
    "head_dim_tile",
    "dot_precision",
    "upcast_dot",
]


def head_dim_tile(head_dim: int) -> int:
    """Power-of-two tile width >= 16 covering ``head_dim`` (tl.dot needs K >= 16)."""
    return max(16, triton.next_power_of_2(head_dim))


def dot_precision(dtype_name: str) -> str:
    """``tl.dot`` input precision: IEEE for float32 (no silent TF32), default otherwise."""
    return "ieee" if dtype_name == "float32" else "tf32"


def upcast_dot(dtype_name: str) -> bool:
    """Whether to upcast bf16 ``tl.dot`` operands: only under the interpreter (see above)."""
    return dtype_name == "bfloat16" and os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _mm(a, b, DOT_PREC: tl.constexpr, UPCAST_DOT: tl.constexpr):
    if UPCAST_DOT:
        r = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        r = tl.dot(a, b, input_precision=DOT_PREC)
    return r


@triton.jit
def _visibility(
    rows, cols, q_len, kv_len, qseg, KSEG, seg_base, CAUSAL: tl.constexpr, HAS_SEG: tl.constexpr
):
    vis = (cols[None, :] < kv_len) & (rows[:, None] >= 0)
    if CAUSAL:
        vis = vis & (rows[:, None] >= cols[None, :])
    if HAS_SEG:
        kseg = tl.load(KSEG + seg_base + cols, mask=cols < kv_len, other=-3)
        vis = vis & (qseg[:, None] == kseg[None, :])
    return vis


@triton.jit
def _load_tile(PTR, base, idx, length, row_stride, offs_d, head_dim):
    """Rows ``idx`` of a (length, head_dim) matrix at ``PTR + base``, zero past either bound."""
    ptrs = PTR + base + idx[:, None] * row_stride + offs_d[None, :]
    mask = (idx[:, None] < length) & (offs_d[None, :] < head_dim)
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _load_qseg(QSEG, b, rows, q_len, HAS_SEG: tl.constexpr):
    """Query segment ids of ``rows`` (-2 past q_len); without segments, ``rows`` (unused)."""
    qseg = rows
    if HAS_SEG:
        qseg = tl.load(QSEG + b * q_len + rows, mask=rows < q_len, other=-2)
    return qseg


@triton.jit
def _load_row_stats(LSE, DELTA, pid_bh, rows, q_len):
    """Saved ``lse`` and ``delta`` of ``rows``; past q_len lse = +inf, so their P is exactly 0."""
    ok = rows < q_len
    lse = tl.load(LSE + pid_bh * q_len + rows, mask=ok, other=float("inf"))
    delta = tl.load(DELTA + pid_bh * q_len + rows, mask=ok, other=0.0)
    return lse, delta


@triton.jit
def flash_fwd_kernel(
    Q,
    K,
    V,
    QSEG,
    KSEG,
    q_len,
    kv_len,
    scale,
    O,
    LSE,
    NUM_HEADS: tl.constexpr,
    GROUP: tl.constexpr,
    head_dim: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_SEG: tl.constexpr,
    DOT_PREC: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
):
    """Forward: O = softmax(Q K^T * scale) V and LSE (natural log) for one query block."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NUM_HEADS
    h = pid_bh % NUM_HEADS
    kv_heads: tl.constexpr = NUM_HEADS // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    d_ok = offs_d[None, :] < head_dim
    row_ok = rows[:, None] < q_len
    q_off = b * q_len * NUM_HEADS * head_dim + h * head_dim
    kv_off = b * kv_len * kv_heads * head_dim + (h // GROUP) * head_dim
    q = _load_tile(Q, q_off, rows, q_len, NUM_HEADS * head_dim, offs_d, head_dim)
    qseg = _load_qseg(QSEG, b, rows, q_len, HAS_SEG)

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    hi = kv_len
    if CAUSAL:
        hi = tl.minimum(kv_len, (pid_m + 1) * BLOCK_M)  # blocks above the diagonal: skipped
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_tile(K, kv_off, cols, kv_len, kv_heads * head_dim, offs_d, head_dim)
        s = _mm(q, tl.trans(k), DOT_PREC, UPCAST_DOT) * scale
        vis = _visibility(rows, cols, q_len, kv_len, qseg, KSEG, b * kv_len, CAUSAL, HAS_SEG)
        s = tl.where(vis, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # row saw no key yet
        alpha = tl.exp(m - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l = l * alpha + tl.sum(p, 1)
        v = _load_tile(V, kv_off, cols, kv_len, kv_heads * head_dim, offs_d, head_dim)
        acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, DOT_PREC, UPCAST_DOT)
        m = m_new
    empty = l == 0.0
    l_safe = tl.where(empty, 1.0, l)
    out = acc / l_safe[:, None]
    tl.store(
        O + q_off + rows[:, None] * (NUM_HEADS * head_dim) + offs_d[None, :],
        out.to(O.dtype.element_ty),
        mask=row_ok & d_ok,
    )
    lse = tl.where(empty, float("inf"), m + tl.log(l_safe))
    tl.store(LSE + pid_bh * q_len + rows, lse, mask=rows < q_len)


@triton.jit
def flash_bwd_preprocess_kernel(
    O,
    DO,
    q_len,
    DELTA,
    NUM_HEADS: tl.constexpr,
    head_dim: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """delta = rowsum(dO * O) in float32, (B, H, Lq)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NUM_HEADS
    h = pid_bh % NUM_HEADS
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    mask = (rows[:, None] < q_len) & (offs_d[None, :] < head_dim)
    ptrs = (
        b * q_len * NUM_HEADS * head_dim
        + h * head_dim
        + rows[:, None] * (NUM_HEADS * head_dim)
        + offs_d[None, :]
    )
    o = tl.load(O + ptrs, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + pid_bh * q_len + rows, tl.sum(o * do, 1), mask=rows < q_len)


@triton.jit
def flash_bwd_dq_kernel(
    Q,
    K,
    V,
    QSEG,
    KSEG,
    DO,
    LSE,
    DELTA,
    q_len,
    kv_len,
    scale,
    DQ,
    NUM_HEADS: tl.constexpr,
    GROUP: tl.constexpr,
    head_dim: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_SEG: tl.constexpr,
    DOT_PREC: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
):
    """dQ for one query block: loop over key blocks, recomputing P from the saved LSE."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NUM_HEADS
    h = pid_bh % NUM_HEADS
    kv_heads: tl.constexpr = NUM_HEADS // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    d_ok = offs_d[None, :] < head_dim
    row_ok = rows[:, None] < q_len
    q_off = b * q_len * NUM_HEADS * head_dim + h * head_dim
    kv_off = b * kv_len * kv_heads * head_dim + (h // GROUP) * head_dim
    q = _load_tile(Q, q_off, rows, q_len, NUM_HEADS * head_dim, offs_d, head_dim)
    do = _load_tile(DO, q_off, rows, q_len, NUM_HEADS * head_dim, offs_d, head_dim)
    lse, delta = _load_row_stats(LSE, DELTA, pid_bh, rows, q_len)
    qseg = _load_qseg(QSEG, b, rows, q_len, HAS_SEG)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    hi = kv_len
    if CAUSAL:
        hi = tl.minimum(kv_len, (pid_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_tile(K, kv_off, cols, kv_len, kv_heads * head_dim, offs_d, head_dim)
        v = _load_tile(V, kv_off, cols, kv_len, kv_heads * head_dim, offs_d, head_dim)
        s = _mm(q, tl.trans(k), DOT_PREC, UPCAST_DOT) * scale
        vis = _visibility(rows, cols, q_len, kv_len, qseg, KSEG, b * kv_len, CAUSAL, HAS_SEG)
        s = tl.where(vis, s, float("-inf"))
        p = tl.exp(s - lse[:, None])
        dp = _mm(do, tl.trans(v), DOT_PREC, UPCAST_DOT)
        ds = p * (dp - delta[:, None])
        dq += _mm(ds.to(k.dtype), k, DOT_PREC, UPCAST_DOT)
    q_ptrs = q_off + rows[:, None] * (NUM_HEADS * head_dim) + offs_d[None, :]
    tl.store(DQ + q_ptrs, (dq * scale).to(DQ.dtype.element_ty), mask=row_ok & d_ok)


@triton.jit
def flash_bwd_dkdv_kernel(
    Q,
    K,
    V,
    QSEG,
    KSEG,
    DO,
    LSE,
    DELTA,
    q_len,
    kv_len,
    scale,
    DK,
    DV,
    NUM_HEADS: tl.constexpr,
    GROUP: tl.constexpr,
    head_dim: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_SEG: tl.constexpr,
    DOT_PREC: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
):
    """dK, dV of one key block for one *query* head (B, Lk, H, D): loop over query blocks."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NUM_HEADS
    h = pid_bh % NUM_HEADS
    kv_heads: tl.constexpr = NUM_HEADS // GROUP
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    d_ok = offs_d[None, :] < head_dim
    col_ok = cols[:, None] < kv_len
    q_off = b * q_len * NUM_HEADS * head_dim + h * head_dim
    kv_off = b * kv_len * kv_heads * head_dim + (h // GROUP) * head_dim
    k = _load_tile(K, kv_off, cols, kv_len, kv_heads * head_dim, offs_d, head_dim)
    v = _load_tile(V, kv_off, cols, kv_len, kv_heads * head_dim, offs_d, head_dim)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    lo = 0
    if CAUSAL:
        lo = (pid_n * BLOCK_N // BLOCK_M) * BLOCK_M  # query blocks before the diagonal: skipped
    for start_m in range(lo, q_len, BLOCK_M):
        rows = start_m + offs_m
        q = _load_tile(Q, q_off, rows, q_len, NUM_HEADS * head_dim, offs_d, head_dim)
        do = _load_tile(DO, q_off, rows, q_len, NUM_HEADS * head_dim, offs_d, head_dim)
        lse, delta = _load_row_stats(LSE, DELTA, pid_bh, rows, q_len)
        qseg = _load_qseg(QSEG, b, rows, q_len, HAS_SEG)
        s = _mm(q, tl.trans(k), DOT_PREC, UPCAST_DOT) * scale
        vis = _visibility(rows, cols, q_len, kv_len, qseg, KSEG, b * kv_len, CAUSAL, HAS_SEG)
        s = tl.where(vis, s, float("-inf"))
        p = tl.exp(s - lse[:, None])
        dv += _mm(tl.trans(p.to(do.dtype)), do, DOT_PREC, UPCAST_DOT)
        dp = _mm(do, tl.trans(v), DOT_PREC, UPCAST_DOT)
        ds = p * (dp - delta[:, None])
        dk += _mm(tl.trans(ds.to(q.dtype)), q, DOT_PREC, UPCAST_DOT)
    out_ptrs = (
        b * kv_len * NUM_HEADS * head_dim
        + h * head_dim
        + cols[:, None] * (NUM_HEADS * head_dim)
        + offs_d[None, :]
    )
    tl.store(DK + out_ptrs, (dk * scale).to(DK.dtype.element_ty), mask=col_ok & d_ok)
    tl.store(DV + out_ptrs, dv.to(DV.dtype.element_ty), mask=col_ok & d_ok)
