"""Flash attention in Pallas: forward and backward (FlashAttention-2), wrapped in ``custom_vjp``.

Algorithm (Dao, "FlashAttention-2", arXiv:2307.08691). Forward, one program per
(query block i, batch b, head h): keep a running row max ``m``, denominator ``l`` and unnormalised
output ``acc`` in float32; for each key block j (only j up to the diagonal when causal)::

    s = q_i k_j^T * scale (+ bias_ij) (masked entries -> -inf)
    m' = max(m, rowmax s);  p = exp(s - m');  alpha = exp(m - m')
    l = alpha * l + rowsum p;  acc = alpha * acc + p v_j
    out_i = acc / l;  lse_i = m + log l     (natural log, saved for the backward)

No (L x L) matrix touches HBM. Backward recomputes ``p = exp(q k^T * scale - lse)`` block by block
(no stored probabilities) with ``delta = rowsum(dO * O)`` precomputed, in two kernels without
atomics: dq (one program per query block, loop over key blocks) and dk/dv (one program per key
block, loop over query blocks, starting at the diagonal when causal)::

    dv += p^T dO;  dp = dO v^T;  ds = p * (dp - delta);  dq += ds k * scale;  dk += ds^T q * scale

Shapes: q (B, Lq, H, D); k, v (B, Lk, Hkv, D); out (B, Lq, H, D); lse (B, H, Lq) float32.
Conventions (causal alignment, segment ids, fully masked rows) are those of ``reference.py``.

Design choices:
* Ragged lengths: the wrapper zero-pads Lq and Lk to block multiples and the kernels mask keys
  ``>= Lk`` (static bound); padded query rows are sliced off (their dO is 0, so they add nothing
  to dk/dv). D is zero-padded to a power of two (Triton tiles), which changes no dot product.
* GQA: the k/v BlockSpec index map reads kv head ``h // group``; dk/dv are produced per query
  head in float32 and summed over each group outside the kernel (simple, no atomics; costs
  ``group`` x the dk/dv memory).
* Masked logits are ``-inf`` with a guarded max (``m`` -> 0 while a row has seen no key), so a
  fully masked row gives ``out = 0`` and ``lse = +inf`` rather than NaN or the mean of V.
* Additive bias (``bias``, (1|B, 1|H, Lq, Lk), e.g. a relative-position bias): added to the
  scaled logits in all three kernels through a BlockSpec that maps broadcast axes to block 0.
  Its gradient is ``ds`` itself, which the dk/dv kernel writes out per (batch, head) in float32
  and the wrapper sums over the broadcast axes: O(B H Lq Lk) memory in the backward, the price
  of a learned bias (no atomics).
* On GPU the kernels are lowered through Pallas' Triton backend (``compiler_params`` from
  ``jax.experimental.pallas.triton``); on CPU they run with ``interpret=True``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from kernels.flash_attention.reference import check_segment_ids, check_shapes
from kernels.flash_attention.tuning import BlockSizes, get_block_sizes

__all__ = ["flash_attention_pallas"]

_NT = (((1,), (1,)), ((), ()))  # a @ b.T
_TN = (((0,), (0,)), ((), ()))  # a.T @ b
_NN = (((1,), (0,)), ((), ()))  # a @ b


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the kernels specialise on (hashable: a custom_vjp non-diff argument)."""

    causal: bool
    scale: float
    kv_len: int  # true key length; keys at positions >= kv_len are padding
    kv_len_padded: int  # key length after padding to a block multiple
    block_q: int
    block_k: int
    block_q_bwd: int
    block_k_bwd: int
    num_warps: int
    num_stages: int
    interpret: bool
    poison: bool


def _dot(a, b, dims, precision):
    return lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def _precision(dtype):
    # float32 inputs: full-precision products (no TF32 on GPU), so fp32 stays an exact check.
    return lax.Precision.HIGHEST if dtype == jnp.float32 else lax.Precision.DEFAULT


def _mask(st: _Static, q_start, k_start, bq, bk, q_seg, k_seg, padded_k: bool):
    """Visibility of a (bq, bk) tile, or None when every entry is visible."""
    mask = None
    if padded_k or st.causal:
        cols = k_start + lax.broadcasted_iota(jnp.int32, (bq, bk), 1)
        if padded_k:
            mask = cols < st.kv_len
        if st.causal:
            rows = q_start + lax.broadcasted_iota(jnp.int32, (bq, bk), 0)
            c = rows >= cols
            mask = c if mask is None else mask & c
    if q_seg is not None:
        s = q_seg[:, None] == k_seg[None, :]
        mask = s if mask is None else mask & s
    return mask


def _compiler_params(st: _Static):
    if st.interpret:
        return None
    from jax.experimental.pallas import triton as pltriton

    return pltriton.CompilerParams(num_warps=st.num_warps, num_stages=st.num_stages)


def _poisoned(shapes, n_inputs: int):
    """Extra NaN-filled inputs aliased to the outputs, so unwritten elements stay NaN."""
    extra = [jnp.full(s.shape, jnp.nan, s.dtype) for s in shapes]
    aliases = {n_inputs + i: i for i in range(len(shapes))}
    return extra, aliases


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------


def _split_refs(refs, n_fixed: int, has_bias: bool, has_seg: bool):
    """(the n_fixed leading refs, bias ref or None, (q seg, kv seg) refs or Nones, the rest)."""
    fixed, rest = list(refs[:n_fixed]), list(refs[n_fixed:])
    bias_ref = rest.pop(0) if has_bias else None
    if has_seg:
        qs_ref, ks_ref = rest.pop(0), rest.pop(0)
    else:
        qs_ref = ks_ref = None
    return fixed, bias_ref, (qs_ref, ks_ref), rest


def _fwd_kernel(*refs, st: _Static, has_bias: bool, has_seg: bool, n_out_alias: int):
    (q_ref, k_ref, v_ref), bias_ref, (qs_ref, ks_ref), rest = _split_refs(
        refs, 3, has_bias, has_seg
    )
    o_ref, lse_ref = rest[n_out_alias:]
    bq, bk = st.block_q, st.block_k
    kv_len_padded = k_ref.shape[0]
    padded_k = kv_len_padded != st.kv_len
    i = pl.program_id(0)
    q_start = i * bq
    q = q_ref[...]
    q_seg = qs_ref[...] if has_seg else None
    prec = _precision(q.dtype)

    def body(j, carry):
        acc, m, l = carry
        k_start = pl.multiple_of(j * bk, bk)
        kv_slice = pl.ds(k_start, bk)
        k = k_ref[kv_slice, :]
        s = _dot(q, k, _NT, prec) * st.scale
        if has_bias:
            s = s + bias_ref[:, kv_slice].astype(jnp.float32)
        k_seg = ks_ref[kv_slice] if has_seg else None
        mask = _mask(st, q_start, k_start, bq, bk, q_seg, k_seg, padded_k)
        if mask is not None:
            s = jnp.where(mask, s, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))
        m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)  # row saw no key yet
        alpha = jnp.exp(m - m_safe)
        p = jnp.exp(s - m_safe[:, None])
        l = alpha * l + jnp.sum(p, axis=1)
        v = v_ref[kv_slice, :]
        acc = alpha[:, None] * acc + _dot(p.astype(v.dtype), v, _NN, prec)
        return acc, m_new, l

    n_blocks = kv_len_padded // bk
    if st.causal:
        # Key blocks strictly above the diagonal of this query block are all masked: skip them.
        upper = jnp.minimum(lax.div(q_start + bq + bk - 1, bk), n_blocks)
    else:
        upper = n_blocks
    init = (
        jnp.zeros((bq, q.shape[1]), jnp.float32),
        jnp.full((bq,), -jnp.inf, jnp.float32),
        jnp.zeros((bq,), jnp.float32),
    )
    acc, m, l = lax.fori_loop(0, upper, body, init)
    empty = l == 0.0
    l_safe = jnp.where(empty, 1.0, l)
    o_ref[...] = (acc / l_safe[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, jnp.inf, m + jnp.log(l_safe))


def _bias_index(bias, bi, hi):
    """(batch, head) block index into a (1|B, 1|H, Lq, Lk) bias."""
    return (bi if bias.shape[0] > 1 else 0), (hi if bias.shape[1] > 1 else 0)


def _forward(q, k, v, bias, q_seg, kv_seg, st: _Static):
    b, lq, h, d = q.shape
    _, lk, hkv, _ = k.shape
    group = h // hkv
    has_seg = q_seg is not None
    has_bias = bias is not None
    bq = st.block_q
    grid = (lq // bq, b, h)
    in_specs = [
        pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0)),
        pl.BlockSpec((None, lk, None, d), lambda i, bi, hi: (bi, 0, hi // group, 0)),
        pl.BlockSpec((None, lk, None, d), lambda i, bi, hi: (bi, 0, hi // group, 0)),
    ]
    args = [q, k, v]
    if has_bias:
        in_specs.append(
            pl.BlockSpec((None, None, bq, lk), lambda i, bi, hi: (*_bias_index(bias, bi, hi), i, 0))
        )
        args.append(bias)
    if has_seg:
        in_specs += [
            pl.BlockSpec((None, bq), lambda i, bi, hi: (bi, i)),
            pl.BlockSpec((None, lk), lambda i, bi, hi: (bi, 0)),
        ]
        args += [q_seg, kv_seg]
    out_shape = [
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        jax.ShapeDtypeStruct((b, h, lq), jnp.float32),
    ]
    out_specs = [
        pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0)),
        pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i)),
    ]
    aliases = {}
    if st.poison:
        extra, aliases = _poisoned(out_shape, len(args))
        in_specs += out_specs
        args += extra
    out, lse = pl.pallas_call(
        functools.partial(
            _fwd_kernel, st=st, has_bias=has_bias, has_seg=has_seg, n_out_alias=len(aliases)
        ),
        grid=grid,
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        input_output_aliases=aliases,
        interpret=st.interpret,
        compiler_params=_compiler_params(st),
        name="flash_attention_fwd",
    )(*args)
    return out, lse


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------


def _dq_kernel(*refs, st: _Static, has_bias: bool, has_seg: bool, n_out_alias: int):
    (q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref), bias_ref, (qs_ref, ks_ref), rest = (
        _split_refs(refs, 6, has_bias, has_seg)
    )
    (dq_ref,) = rest[n_out_alias:]
    bq, bk = st.block_q, st.block_k
    kv_len_padded = k_ref.shape[0]
    padded_k = kv_len_padded != st.kv_len
    q_start = pl.program_id(0) * bq
    q = q_ref[...]
    do = do_ref[...]
    lse = lse_ref[...]
    delta = delta_ref[...]
    q_seg = qs_ref[...] if has_seg else None
    prec = _precision(q.dtype)

    def body(j, dq):
        k_start = pl.multiple_of(j * bk, bk)
        kv_slice = pl.ds(k_start, bk)
        k = k_ref[kv_slice, :]
        v = v_ref[kv_slice, :]
        s = _dot(q, k, _NT, prec) * st.scale
        if has_bias:
            s = s + bias_ref[:, kv_slice].astype(jnp.float32)
        k_seg = ks_ref[kv_slice] if has_seg else None
        mask = _mask(st, q_start, k_start, bq, bk, q_seg, k_seg, padded_k)
        if mask is not None:
            s = jnp.where(mask, s, -jnp.inf)
        p = jnp.exp(s - lse[:, None])
        dp = _dot(do, v, _NT, prec)
        ds = p * (dp - delta[:, None])
        return dq + _dot(ds.astype(k.dtype), k, _NN, prec)

    n_blocks = kv_len_padded // bk
    if st.causal:
        upper = jnp.minimum(lax.div(q_start + bq + bk - 1, bk), n_blocks)
    else:
        upper = n_blocks
    dq = lax.fori_loop(0, upper, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * st.scale).astype(dq_ref.dtype)


def _dkdv_kernel(*refs, st: _Static, has_bias: bool, has_seg: bool, n_out_alias: int):
    (q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref), bias_ref, (qs_ref, ks_ref), rest = (
        _split_refs(refs, 6, has_bias, has_seg)
    )
    dk_ref, dv_ref, *ds_out = rest[n_out_alias:]
    ds_ref = ds_out[0] if has_bias else None
    bq, bk = st.block_q_bwd, st.block_k_bwd
    q_len_padded = q_ref.shape[0]
    k_start = pl.program_id(0) * bk
    padded_k = st.kv_len_padded != st.kv_len
    k = k_ref[...]
    v = v_ref[...]
    k_seg = ks_ref[...] if has_seg else None
    prec = _precision(k.dtype)

    def body(i, carry):
        dk, dv = carry
        q_start = pl.multiple_of(i * bq, bq)
        q_slice = pl.ds(q_start, bq)
        q = q_ref[q_slice, :]
        do = do_ref[q_slice, :]
        lse = lse_ref[q_slice]
        delta = delta_ref[q_slice]
        s = _dot(q, k, _NT, prec) * st.scale
        if has_bias:
            s = s + bias_ref[q_slice, :].astype(jnp.float32)
        q_seg = qs_ref[q_slice] if has_seg else None
        mask = _mask(st, q_start, k_start, bq, bk, q_seg, k_seg, padded_k)
        if mask is not None:
            s = jnp.where(mask, s, -jnp.inf)
        p = jnp.exp(s - lse[:, None])
        dv = dv + _dot(p.astype(do.dtype), do, _TN, prec)
        dp = _dot(do, v, _NT, prec)
        ds = p * (dp - delta[:, None])
        if has_bias:
            ds_ref[q_slice, :] = ds  # d loss / d logits = d loss / d bias (float32)
        dk = dk + _dot(ds.astype(q.dtype), q, _TN, prec)
        return dk, dv

    n_blocks = q_len_padded // bq
    # Causal: query blocks that end before this key block starts see none of it.
    lower = lax.div(k_start, bq) if st.causal else 0
    if has_bias:
        ds_ref[...] = jnp.zeros(ds_ref.shape, ds_ref.dtype)  # query blocks the loop skips
    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = lax.fori_loop(lower, n_blocks, body, (zeros, zeros))
    dk_ref[...] = (dk * st.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _backward(q, k, v, bias, q_seg, kv_seg, out, lse, do, st: _Static):
    b, lq, h, d = q.shape
    _, lk, hkv, _ = k.shape
    group = h // hkv
    has_seg = q_seg is not None
    has_bias = bias is not None
    # delta = rowsum(dO * O): a cheap elementwise-reduce that XLA fuses; (B, H, Lq) float32.
    delta = jnp.einsum("bqhd,bqhd->bhq", do.astype(jnp.float32), out.astype(jnp.float32))
    q_full = pl.BlockSpec((None, lq, None, d), lambda j, bi, hi: (bi, 0, hi, 0))
    kv_full = pl.BlockSpec((None, lk, None, d), lambda i, bi, hi: (bi, 0, hi // group, 0))
    args = [q, k, v, do, lse, delta]

    # dq: one program per query block.
    bq = st.block_q
    in_specs = [
        pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0)),
        kv_full,
        kv_full,
        pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0)),
        pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i)),
        pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i)),
    ]
    dq_args = list(args)
    if has_bias:
        in_specs.append(
            pl.BlockSpec((None, None, bq, lk), lambda i, bi, hi: (*_bias_index(bias, bi, hi), i, 0))
        )
        dq_args.append(bias)
    if has_seg:
        in_specs += [
            pl.BlockSpec((None, bq), lambda i, bi, hi: (bi, i)),
            pl.BlockSpec((None, lk), lambda i, bi, hi: (bi, 0)),
        ]
        dq_args += [q_seg, kv_seg]
    out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype)]
    out_specs = [pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0))]
    aliases = {}
    if st.poison:
        extra, aliases = _poisoned(out_shape, len(dq_args))
        in_specs += out_specs
        dq_args += extra
    (dq,) = pl.pallas_call(
        functools.partial(
            _dq_kernel, st=st, has_bias=has_bias, has_seg=has_seg, n_out_alias=len(aliases)
        ),
        grid=(lq // bq, b, h),
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        input_output_aliases=aliases,
        interpret=st.interpret,
        compiler_params=_compiler_params(st),
        name="flash_attention_dq",
    )(*dq_args)

    # dk, dv: one program per key block and *query* head (GQA groups are summed below).
    bk = st.block_k_bwd
    in_specs = [
        q_full,
        pl.BlockSpec((None, bk, None, d), lambda j, bi, hi: (bi, j, hi // group, 0)),
        pl.BlockSpec((None, bk, None, d), lambda j, bi, hi: (bi, j, hi // group, 0)),
        q_full,
        pl.BlockSpec((None, None, lq), lambda j, bi, hi: (bi, hi, 0)),
        pl.BlockSpec((None, None, lq), lambda j, bi, hi: (bi, hi, 0)),
    ]
    kv_args = list(args)
    if has_bias:
        in_specs.append(
            pl.BlockSpec((None, None, lq, bk), lambda j, bi, hi: (*_bias_index(bias, bi, hi), 0, j))
        )
        kv_args.append(bias)
    if has_seg:
        in_specs += [
            pl.BlockSpec((None, lq), lambda j, bi, hi: (bi, 0)),
            pl.BlockSpec((None, bk), lambda j, bi, hi: (bi, j)),
        ]
        kv_args += [q_seg, kv_seg]
    # Per-query-head dk/dv stay float32 until the group sum (one rounding, at the end).
    out_dtype = jnp.float32 if group > 1 else k.dtype
    out_shape = [jax.ShapeDtypeStruct((b, lk, h, d), out_dtype)] * 2
    out_specs = [pl.BlockSpec((None, bk, None, d), lambda j, bi, hi: (bi, j, hi, 0))] * 2
    if has_bias:
        # d logits for every (batch, head): the O(B H Lq Lk) price of a differentiable bias.
        out_shape.append(jax.ShapeDtypeStruct((b, h, lq, lk), jnp.float32))
        out_specs.append(pl.BlockSpec((None, None, lq, bk), lambda j, bi, hi: (bi, hi, 0, j)))
    aliases = {}
    if st.poison:
        extra, aliases = _poisoned(out_shape, len(kv_args))
        in_specs += out_specs
        kv_args += extra
    dk, dv, *ds = pl.pallas_call(
        functools.partial(
            _dkdv_kernel, st=st, has_bias=has_bias, has_seg=has_seg, n_out_alias=len(aliases)
        ),
        grid=(lk // bk, b, h),
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        input_output_aliases=aliases,
        interpret=st.interpret,
        compiler_params=_compiler_params(st),
        name="flash_attention_dkdv",
    )(*kv_args)
    if group > 1:
        dk = dk.reshape(b, lk, hkv, group, d).sum(axis=3).astype(k.dtype)
        dv = dv.reshape(b, lk, hkv, group, d).sum(axis=3).astype(v.dtype)
    dbias = None
    if has_bias:
        axes = tuple(i for i in (0, 1) if bias.shape[i] == 1 and ds[0].shape[i] != 1)
        dbias = ds[0].sum(axis=axes, keepdims=True).astype(bias.dtype)
    return dq, dk, dv, dbias


# ----------------------------------------------------------------------------------------------
# custom_vjp on padded arrays; padding/slicing outside is differentiated by JAX itself.
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _flash_padded(q, k, v, bias, q_seg, kv_seg, st: _Static):
    return _forward(q, k, v, bias, q_seg, kv_seg, st)


def _flash_padded_fwd(q, k, v, bias, q_seg, kv_seg, st: _Static):
    out, lse = _forward(q, k, v, bias, q_seg, kv_seg, st)
    return (out, lse), (q, k, v, bias, q_seg, kv_seg, out, lse)


def _flash_padded_bwd(st: _Static, res, cts):
    q, k, v, bias, q_seg, kv_seg, out, lse = res
    do, _ = cts  # the lse output is not differentiated (it is a residual, not a model output)
    dq, dk, dv, dbias = _backward(q, k, v, bias, q_seg, kv_seg, out, lse, do, st)
    return dq, dk, dv, dbias, None, None


_flash_padded.defvjp(_flash_padded_fwd, _flash_padded_bwd)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _next_pow2(x: int) -> int:
    return 1 << max(0, x - 1).bit_length()


def _fit_block(block: int, length: int) -> int:
    # Never tile wider than the (power-of-two rounded) sequence: less padding for short inputs.
    return max(16, min(block, _next_pow2(length)))


def _empty_attention(q: jax.Array, kv_len: int, return_lse: bool):
    """The result when a grid axis is empty: zeros (a row that sees no key is 0, lse +inf).

    Pallas cannot tile a zero-length axis (the padded block would exceed the array), and
    there is nothing to compute.
    """
    out = jnp.zeros_like(q)
    if not return_lse:
        return out
    b, lq, h, _ = q.shape
    return out, jnp.full((b, h, lq), jnp.inf if kv_len == 0 else 0.0, jnp.float32)


def flash_attention_pallas(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    scale: float | None = None,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    bias: jax.Array | None = None,
    block_sizes: BlockSizes | None = None,
    interpret: bool | None = None,
    poison: bool = False,
    return_lse: bool = False,
):
    """Pallas flash attention (differentiable in q, k, v).

    Args:
      q, k, v: (B, Lq, H, D), (B, Lk, Hkv, D), (B, Lk, Hkv, D); bf16, fp16 or fp32.
      causal: top-left causal mask.
      scale: logits scale, default ``1/sqrt(D)``.
      q_segment_ids, kv_segment_ids: optional (B, Lq), (B, Lk) int ids; equal ids attend.
      bias: optional additive logits bias of shape (1 or B, 1 or H, Lq, Lk), added after the
        scale (as ``jax.nn``); differentiable (its gradient costs one float32 (B, H, Lq, Lk)
        array in the backward pass).
      block_sizes: tiles; default from the tuning table for this device kind and D.
      interpret: run the Pallas interpreter; default: True unless the backend is a GPU.
      poison: fill the kernels' output buffers with NaN before they run (tests: any element
        a kernel forgets to write stays NaN).
      return_lse: also return the natural-log log-sum-exp (B, H, Lq), float32.

    Returns:
      ``out`` (B, Lq, H, D) in ``q.dtype``, or ``(out, lse)``.
    """
    check_shapes(q, k, v)
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("flash_attention_pallas: give both segment id arrays or neither")
    check_segment_ids(q, k, q_segment_ids, kv_segment_ids)
    b, lq, h, d = q.shape
    lk = k.shape[1]
    if bias is not None and (
        bias.ndim != 4
        or bias.shape[0] not in (1, b)
        or bias.shape[1] not in (1, h)
        or tuple(bias.shape[2:]) != (lq, lk)
    ):
        raise ValueError(
            f"flash_attention_pallas: bias has shape {tuple(bias.shape)}; it must be "
            f"(1 or {b}, 1 or {h}, {lq}, {lk})"
        )
    if 0 in (b, lq, h, lk):
        return _empty_attention(q, lk, return_lse)
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    bs = block_sizes or get_block_sizes("pallas", d)
    bq, bk = _fit_block(bs.block_q, lq), _fit_block(bs.block_k, lk)
    bq_bwd, bk_bwd = _fit_block(bs.block_q_bwd, lq), _fit_block(bs.block_k_bwd, lk)
    lq_pad = _round_up(lq, max(bq, bq_bwd))
    lk_pad = _round_up(lk, max(bk, bk_bwd))
    d_pad = max(16, _next_pow2(d))
    st = _Static(
        causal=bool(causal),
        scale=1.0 / math.sqrt(d) if scale is None else float(scale),
        kv_len=lk,
        kv_len_padded=lk_pad,
        block_q=bq,
        block_k=bk,
        block_q_bwd=bq_bwd,
        block_k_bwd=bk_bwd,
        num_warps=bs.num_warps,
        num_stages=bs.num_stages,
        interpret=bool(interpret),
        poison=bool(poison),
    )

    def pad(x, length):
        return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, d_pad - d)))

    qp, kp, vp = pad(q, lq_pad), pad(k, lk_pad), pad(v, lk_pad)
    q_seg = kv_seg = None
    if q_segment_ids is not None:
        # Padded keys are masked by position already; padded queries are sliced away.
        q_seg = jnp.pad(q_segment_ids.astype(jnp.int32), ((0, 0), (0, lq_pad - lq)))
        kv_seg = jnp.pad(kv_segment_ids.astype(jnp.int32), ((0, 0), (0, lk_pad - lk)))
    bias_p = None
    if bias is not None:
        # Padded keys are masked by position and padded queries sliced away: pad with 0.
        bias_p = jnp.pad(bias, ((0, 0), (0, 0), (0, lq_pad - lq), (0, lk_pad - lk)))
    out, lse = _flash_padded(qp, kp, vp, bias_p, q_seg, kv_seg, st)
    out = out[:, :lq, :, :d]
    if return_lse:
        return out, lse[:, :, :lq]
    return out
