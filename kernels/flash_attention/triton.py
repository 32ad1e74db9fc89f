"""Triton flash attention called from JAX through ``jax_triton.triton_call``, with ``custom_vjp``.

The kernels are the raw ``@triton.jit`` functions of ``triton_kernels.py`` (tested on CPU under
the Triton interpreter); this module only allocates outputs, computes grids and wires the
forward (saving ``lse``) and the backward (preprocess ``delta``, then dq and dk/dv kernels, GQA
group sum) into ``jax.custom_vjp``. ``triton_call`` has no autodiff, no vmap and no CPU
lowering: this path runs on NVIDIA GPUs only (``ops.fallback_reason`` says so elsewhere).

jax-triton compatibility (the decision, see kernels/README.md):

* Output spec keyword: jax-triton 0.3.1 (the one that installs next to triton 3.6 on the GPU
  machine's jax 0.11.2) names it ``out_shape=``; 0.4.x names it ``out_type=`` (``out_shape=``
  still works there but warns). :func:`_triton_call` inspects the signature and uses the right
  one.
* jax 0.12 calls dead-code-elimination rules as ``rule(used_outs, live_ins, eqn)``; jax-triton
  0.4.1 registers a two-argument ``rule(used_outs, eqn)`` for its primitive, so every
  ``jit`` that contains a ``triton_call`` fails with ``TypeError: _triton_kernel_call_dce_rule()
  takes 2 positional arguments but 3 were given`` (reproduced on CPU: the failure is in tracing,
  before any lowering). :func:`_patch_dce_rule` re-registers a three-argument wrapper when, and
  only when, jax's default rule takes three arguments and jax-triton's takes two; on jax 0.11
  nothing changes. With the patch, tracing and DCE succeed on CPU (lowering then stops at "no
  CPU lowering", as expected).
* Lowering for CUDA without a GPU: jax-triton compiles the kernel while lowering and asks the
  device for its compute capability; :func:`lowering_target` names it instead, which is how
  ``kernels.cuda_lowering`` lowers (and so compiles, with the signature jax-triton infers)
  the kernels on a CPU machine that has jax's CUDA plugin (``make test-lowering``).
  Fallback if a later jax breaks more hooks: compile the same kernels with ``triton.compile``
  and call them through ``jax.ffi``, or use the Pallas path.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np

from kernels.flash_attention.reference import check_segment_ids, check_shapes
from kernels.flash_attention.tuning import BlockSizes, get_block_sizes

__all__ = ["flash_attention_triton", "lowering_target"]

_TARGET_CC: contextvars.ContextVar[int | None] = contextvars.ContextVar("cc", default=None)


@contextlib.contextmanager
def lowering_target(compute_capability: int):
    """Within the block, ``triton_call`` compiles for ``compute_capability`` (e.g. 90 for an
    H100/H200) instead of asking the GPU: for lowering for CUDA on a machine without one."""
    token = _TARGET_CC.set(int(compute_capability))
    try:
        yield
    finally:
        _TARGET_CC.reset(token)


def _patch_dce_rule(jt) -> None:
    """Adapt jax-triton's 2-argument DCE rule to jax >= 0.12's 3-argument convention."""
    try:
        from jax._src.interpreters import partial_eval as pe

        prim = jt.triton_lib.triton_kernel_call_p
        rule = pe.dce_rules.get(prim)
        jax_arity = len(inspect.signature(pe._default_dce_rule).parameters)
    except (ImportError, AttributeError):  # internals moved: nothing we know how to patch
        return
    if rule is None or getattr(rule, "_jaxfm_dce_shim", False):
        return
    if jax_arity == 3 and len(inspect.signature(rule).parameters) == 2:

        def rule3(used_outs, live_ins, eqn):
            del live_ins  # jax-triton keeps every input alive anyway
            return rule(used_outs, eqn)

        rule3._jaxfm_dce_shim = True
        pe.dce_rules[prim] = rule3


def _tk():
    # Imported on first use so this module (and its shims) import without triton installed.
    from kernels.flash_attention import triton_kernels

    return triton_kernels


@functools.lru_cache(maxsize=1)
def _jax_triton():
    import jax_triton as jt

    _patch_dce_rule(jt)
    return jt


def _triton_call(*args, kernel, out, grid, block_sizes: BlockSizes, **meta):
    """``jax_triton.triton_call`` with the 0.3.1 (``out_shape``) / 0.4 (``out_type``) shim."""
    jt = _jax_triton()
    key = "out_type" if "out_type" in inspect.signature(jt.triton_call).parameters else "out_shape"
    if (cc := _TARGET_CC.get()) is not None:
        meta["compute_capability"] = cc
    return jt.triton_call(
        *args,
        kernel=kernel,
        grid=grid,
        num_warps=block_sizes.num_warps,
        num_stages=block_sizes.num_stages,
        **{key: out},
        **meta,
    )


def _meta(q, k, bs: BlockSizes, causal: bool, has_seg: bool, backward: bool):
    h, hkv, d = q.shape[2], k.shape[2], q.shape[3]
    dtype = jnp.dtype(q.dtype).name
    tk = _tk()
    return dict(
        NUM_HEADS=h,
        GROUP=h // hkv,
        head_dim=d,
        HEAD_DIM=tk.head_dim_tile(d),
        BLOCK_M=bs.block_q_bwd if backward else bs.block_q,
        BLOCK_N=bs.block_k_bwd if backward else bs.block_k,
        CAUSAL=causal,
        HAS_SEG=has_seg,
        DOT_PREC=tk.dot_precision(dtype),
        UPCAST_DOT=False,  # interpreter-only workaround; never on a GPU
    )


def _segs(q_seg, kv_seg):
    if q_seg is None:
        dummy = jnp.zeros((1,), jnp.int32)  # never read: HAS_SEG=False
        return dummy, dummy
    return q_seg.astype(jnp.int32), kv_seg.astype(jnp.int32)


def _forward(q, k, v, q_seg, kv_seg, causal, scale, bs):
    b, lq, h, _ = q.shape
    lk = k.shape[1]
    qs, ks = _segs(q_seg, kv_seg)
    tk = _tk()
    meta = _meta(q, k, bs, causal, q_seg is not None, backward=False)
    out_types = (
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        jax.ShapeDtypeStruct((b, h, lq), jnp.float32),
    )
    grid = (-(-lq // bs.block_q), b * h, 1)
    out, lse = _triton_call(
        q,
        k,
        v,
        qs,
        ks,
        lq,
        lk,
        scale,
        kernel=tk.flash_fwd_kernel,
        out=out_types,
        grid=grid,
        block_sizes=bs,
        **meta,
    )
    return out, lse


def _backward(q, k, v, q_seg, kv_seg, out, lse, do, causal, scale, bs):
    b, lq, h, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    qs, ks = _segs(q_seg, kv_seg)
    tk = _tk()
    meta = _meta(q, k, bs, causal, q_seg is not None, backward=True)
    fwd_meta = _meta(q, k, bs, causal, q_seg is not None, backward=False)
    grid_q = (-(-lq // bs.block_q), b * h, 1)
    (delta,) = _triton_call(
        out,
        do,
        lq,
        kernel=tk.flash_bwd_preprocess_kernel,
        out=(jax.ShapeDtypeStruct((b, h, lq), jnp.float32),),
        grid=grid_q,
        block_sizes=bs,
        NUM_HEADS=h,
        head_dim=d,
        HEAD_DIM=tk.head_dim_tile(d),
        BLOCK_M=bs.block_q,
    )
    (dq,) = _triton_call(
        q,
        k,
        v,
        qs,
        ks,
        do,
        lse,
        delta,
        lq,
        lk,
        scale,
        kernel=tk.flash_bwd_dq_kernel,
        out=(jax.ShapeDtypeStruct(q.shape, q.dtype),),
        grid=grid_q,
        block_sizes=bs,
        **fwd_meta,
    )
    grid_k = (-(-lk // bs.block_k_bwd), b * h, 1)
    per_head = jax.ShapeDtypeStruct((b, lk, h, d), jnp.float32)
    dk, dv = _triton_call(
        q,
        k,
        v,
        qs,
        ks,
        do,
        lse,
        delta,
        lq,
        lk,
        scale,
        kernel=tk.flash_bwd_dkdv_kernel,
        out=(per_head, per_head),
        grid=grid_k,
        block_sizes=bs,
        **meta,
    )
    group = h // hkv
    dk = dk.reshape(b, lk, hkv, group, d).sum(axis=3).astype(k.dtype)
    dv = dv.reshape(b, lk, hkv, group, d).sum(axis=3).astype(v.dtype)
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _flash(q, k, v, q_seg, kv_seg, causal, scale, bs):
    return _forward(q, k, v, q_seg, kv_seg, causal, scale, bs)[0]


def _flash_fwd(q, k, v, q_seg, kv_seg, causal, scale, bs):
    out, lse = _forward(q, k, v, q_seg, kv_seg, causal, scale, bs)
    return out, (q, k, v, q_seg, kv_seg, out, lse)


def _flash_bwd(causal, scale, bs, res, do):
    q, k, v, q_seg, kv_seg, out, lse = res
    dq, dk, dv = _backward(q, k, v, q_seg, kv_seg, out, lse, do, causal, scale, bs)
    return dq, dk, dv, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def flash_attention_triton(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    scale: float | None = None,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    block_sizes: BlockSizes | None = None,
) -> jax.Array:
    """Triton flash attention on an NVIDIA GPU (differentiable in q, k, v).

    Args:
      q, k, v: (B, Lq, H, D), (B, Lk, Hkv, D), (B, Lk, Hkv, D); bf16, fp16 or fp32; D <= 256.
      causal: top-left causal mask.
      scale: logits scale, default ``1/sqrt(D)``.
      q_segment_ids, kv_segment_ids: optional (B, Lq), (B, Lk) int ids; equal ids attend.
      block_sizes: tiles; default from the tuning table for this device kind and D.

    Returns:
      (B, Lq, H, D) in ``q.dtype``.
    """
    check_shapes(q, k, v)
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("flash_attention_triton: give both segment id arrays or neither")
    check_segment_ids(q, k, q_segment_ids, kv_segment_ids)
    if 0 in (q.shape[0], q.shape[1], q.shape[2], k.shape[1]):
        return jnp.zeros_like(q)  # nothing to tile; a row that sees no key is 0
    d = q.shape[-1]
    bs = block_sizes or get_block_sizes("triton", d)
    # np.float32, not a Python float: jax-triton 0.3.1 types a Python float as fp64, which
    # turns the kernel's loop-carried running max into fp64 and fails compilation.
    scale = np.float32(1.0 / math.sqrt(d) if scale is None else scale)
    return _flash(q, k, v, q_segment_ids, kv_segment_ids, bool(causal), scale, bs)
