"""Flash attention in Pallas' Mosaic GPU backend (Hopper and newer): forward and backward.

Mosaic GPU is the Pallas GPU backend JAX supports from 0.11 on (the Triton lowering that
``pallas.py`` uses is deprecated). The kernels follow FlashAttention-3's design (Shah et al.,
arXiv:2407.08608) in its two parts that matter most on an H100/H200:

* **Warp specialisation.** Every kernel runs ``compute_wgs`` compute warpgroups (64 query rows
  each in the forward) and one producer warpgroup that only issues TMA copies: K and V blocks
  (and the bias tile, key segment ids) stream through a ring of ``stages`` shared-memory slots.
  A slot has one "full" barrier per array (the TMA completion) and one "consumed" barrier that
  every compute warpgroup arrives at once it is done with the slot; the producer waits on it
  before refilling. The producer hands its registers to the compute warpgroups
  (``set_max_registers``).
* **Tensor-core matmuls from shared memory** (``wgmma``; Q K^T with K read transposed in
  place, P V with P from registers in the input dtype), the softmax in float32 registers in
  the exp2 domain (``log2(e)`` folded into the scale).

Forward, per (query block, head, batch), online softmax as in ``pallas.py`` (running max ``m``,
denominator ``l``, unnormalised ``acc``); masked logits are ``-inf`` with a guarded max, so a row
that sees no key gives ``out = 0`` and ``lse = +inf``. Causal: the producer and the compute
warpgroups stop at the last key block the query block can see.

Backward, FlashAttention-2's two kernels with ``p`` recomputed from ``lse`` and
``delta = rowsum(dO * O)`` precomputed:

* dQ, per query block, looping over key blocks: ``p``, ``dp = dO V^T``, ``ds = p (dp - delta)``,
  ``dq += ds K``; it also writes ``ds`` per (batch, head), which is the bias gradient.
* dK/dV, per key block, looping over query blocks (from the diagonal when causal), in the
  transposed frame so that every matmul has its operands in shared memory or registers as
  ``wgmma`` wants them: ``s^T = K Q^T`` (+ the transposed bias), ``dv += p^T dO``,
  ``dp^T = V dO^T``, ``dk += ds^T Q``.

Shapes and conventions are those of ``pallas.py`` and ``reference.py``: q (B, Lq, H, D); k, v
(B, Lk, Hkv, D); GQA head ``h`` reads kv head ``h // (H // Hkv)``; top-left causal; segment ids
(equal ids attend); additive bias (1|B, 1|H, Lq, Lk) with its gradient. dk/dv are made per query
head in float32 and summed over each group outside (no atomics).

What it takes: bf16 or fp16, head_dim 64 or 128 (``unsupported_reason`` says why not
otherwise; ``jaxfm.nn.attention`` then falls back). Lengths are zero-padded to block multiples
(keys past the true length masked by position, padded queries sliced off).

On a GPU the kernels compile through Mosaic GPU; anywhere else they run in Mosaic GPU's
interpreter (``plgpu.InterpretGPUParams``: it simulates shared memory, barriers and the TMA
and checks the synchronisation), which is how the tests check them against the float64 oracle.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from kernels.flash_attention.reference import check_segment_ids, check_shapes

__all__ = ["flash_attention_mosaic", "unsupported_reason", "HEAD_DIMS", "DTYPES"]

HEAD_DIMS = (64, 128)
DTYPES = ("bfloat16", "float16")
_LOG2E = math.log2(math.e)
_ROWS = 64  # rows of one warpgroup's wgmma tile


@dataclasses.dataclass(frozen=True)
class _Static:
    """What the kernels specialise on (hashable: a custom_vjp non-diff argument)."""

    causal: bool
    scale: float
    kv_len: int  # true key length; keys at positions >= kv_len are padding
    block_k: int
    compute_wgs: int  # forward: compute warpgroups per query block (64 rows each)
    stages: int  # ring slots per streamed array
    interpret: plgpu.InterpretGPUParams | None  # None: compile for the GPU


def unsupported_reason(q, k, v) -> str | None:
    """Why the Mosaic GPU kernels cannot take these inputs, or None if they can."""
    dtypes = {str(x.dtype) for x in (q, k, v)}
    if len(dtypes) != 1 or next(iter(dtypes)) not in DTYPES:
        return f"mosaic takes bf16/fp16 only (got {q.dtype}/{k.dtype}/{v.dtype})"
    if q.shape[-1] not in HEAD_DIMS:
        return f"mosaic takes head_dim {HEAD_DIMS} (got {q.shape[-1]})"
    return None


def _tiled(dtype) -> tuple:
    """Shared-memory transforms wgmma and the TMA want: 128-byte swizzle, (8, 128 B) tiles."""
    elems = 128 // jnp.dtype(dtype).itemsize
    return (plgpu.TilingTransform((8, elems)), plgpu.SwizzleTransform(128))


def _smem(shape, dtype, tiled: bool = True):
    return plgpu.SMEM(shape, dtype, transforms=_tiled(dtype) if tiled else ())


def _wgmma(a, b, shape) -> jax.Array:
    """``a @ b`` on the tensor cores into a fresh float32 accumulator."""

    def run(acc):
        plgpu.wgmma(acc, a, b)
        return acc[...]

    return pl.run_scoped(run, plgpu.ACC(shape, jnp.float32))


def _wgmma_acc(acc: jax.Array, a: jax.Array, b, st: _Static, staging) -> jax.Array:
    """``acc + a @ b`` on the tensor cores, ``a`` from registers (the probabilities or ``ds``
    in the input dtype, as FlashAttention-3 keeps them), accumulating in place
    (``pl.run_state`` over a pre-initialised accumulator).

    Mosaic GPU's interpreter takes neither a register operand nor ``run_state`` yet, so there
    ``a`` goes through the shared-memory buffer ``staging`` and the product into a fresh
    accumulator that is added: the same arithmetic (the same bf16/fp16 rounding of ``a``).
    """
    if st.interpret is not None:
        staging[...] = a
        plgpu.commit_smem()
        return acc + _wgmma(staging, b, acc.shape)

    def run(acc_ref):
        plgpu.wgmma(acc_ref, a, b)

    return pl.run_state(run)(plgpu.ACC.init(acc))


def _staging(shape, dtype, st: _Static):
    """Shared memory for :func:`_wgmma_acc`'s register operand (interpreter only)."""
    return None if st.interpret is None else _smem(shape, dtype)


def _zeros(shape) -> jax.Array:
    layout = plgpu.Layout.WGMMA if len(shape) == 2 else plgpu.Layout.WGMMA.reduce(1)
    return plgpu.layout_cast(jnp.zeros(shape, jnp.float32), layout)


def _rows(x, shape):
    """A per-row vector (layout WGMMA.reduce(1)) broadcast along the columns of ``shape``."""
    return lax.broadcast_in_dim(x, shape, [0])


def _cols(x, shape):
    """A per-column vector (layout WGMMA.reduce(0)) broadcast along the rows of ``shape``."""
    return lax.broadcast_in_dim(x, shape, [1])


def _produce(start, stop, stages: int, streams, consumed, *, most: int) -> None:
    """The producer warpgroup: for steps ``start .. stop-1`` copy every stream's block into
    ring slot ``(step - start) % stages``, waiting for the compute warpgroups to release it
    (``consumed``: one barrier per slot, every compute warpgroup arrives once per step).

    ``streams``: ``(source(step) -> GMEM ref view, SMEM ring, full barriers)`` triples;
    ``most``: the static number of blocks (no slot is filled past it, even under a false
    ``pl.when``: a static slice out of bounds is an error at trace time).
    """

    def issue(step, slot):
        for source, ring, full in streams:
            plgpu.copy_gmem_to_smem(source(step), ring.at[slot], full.at[slot])

    for i in range(min(stages, most)):  # fill the ring

        @pl.when(start + i < stop)
        def _(i=i):
            issue(start + i, i)

    refills = jnp.maximum(stop - start - stages, 0)

    @pl.loop(0, refills)
    def _(n):
        slot = lax.rem(n, stages)
        plgpu.barrier_wait(consumed.at[slot])  # step n is done with the slot
        issue(start + n + stages, slot)

    # Observe the last steps' releases too: every phase of every barrier is waited for once,
    # so no phase is left pending when the barriers are freed.
    @pl.loop(refills, stop - start)
    def _(n):
        plgpu.barrier_wait(consumed.at[lax.rem(n, stages)])


def _visible(st: _Static, shape, row0, col0, *, transposed: bool, q_seg=None, k_seg=None):
    """Which logits of a (rows, cols) tile a query may see (None: all of them).

    ``transposed``: rows are keys and columns queries (the dK/dV kernel's frame).
    ``q_seg``/``k_seg``: the tile's segment ids in the matching vector layouts.
    """
    rows = plgpu.broadcasted_iota(jnp.int32, shape, 0, layout=plgpu.Layout.WGMMA) + row0
    cols = plgpu.broadcasted_iota(jnp.int32, shape, 1, layout=plgpu.Layout.WGMMA) + col0
    qpos, kpos = (cols, rows) if transposed else (rows, cols)
    vis = None

    def both(a, b):
        return b if a is None else a & b

    if st.kv_len % st.block_k:
        vis = both(vis, kpos < st.kv_len)
    if st.causal:
        vis = both(vis, kpos <= qpos)
    if q_seg is not None:
        if transposed:
            vis = both(vis, _cols(q_seg, shape) == _rows(k_seg, shape))
        else:
            vis = both(vis, _rows(q_seg, shape) == _cols(k_seg, shape))
    return vis


def _causal_kv_steps(st: _Static, q_end, n_k: int):
    """Key blocks a query block ending before row ``q_end`` needs (all of them if not causal)."""
    if not st.causal:
        return n_k
    return jnp.minimum(lax.div(q_end + st.block_k - 1, st.block_k), n_k)


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------


def _forward(q, k, v, bias, q_seg, kv_seg, st: _Static):
    b_sz, lq, h, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    group = h // hkv
    nc, bk, stages = st.compute_wgs, st.block_k, st.stages
    bq = nc * _ROWS  # query rows per program
    n_k = lk // bk
    has_bias, has_seg = bias is not None, q_seg is not None
    dt = q.dtype

    def kernel(*refs):
        q_ref, k_ref, v_ref, *rest = refs
        bias_ref = rest.pop(0) if has_bias else None
        qs_ref, ks_ref = (rest.pop(0), rest.pop(0)) if has_seg else (None, None)
        out_ref, lse_ref = rest
        bi, hi, qi = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("q")
        steps = _causal_kv_steps(st, (qi + 1) * bq, n_k)

        def body(q_smem, lse_smem, qs_smem, k_ring, v_ring, b_ring, ks_ring, stage, bars):
            q_bar, qs_bar, k_full, v_full, b_full, ks_full, consumed = bars
            wg = lax.axis_index("wg")

            @pl.when(wg == nc)
            def _producer():
                plgpu.set_max_registers(40, action="decrease")
                kvh = lax.div(hi, group)
                streams = [
                    (lambda s: k_ref.at[bi, pl.ds(s * bk, bk), kvh], k_ring, k_full),
                    (lambda s: v_ref.at[bi, pl.ds(s * bk, bk), kvh], v_ring, v_full),
                ]
                if has_bias:
                    bb = bi if bias.shape[0] > 1 else 0
                    bh = hi if bias.shape[1] > 1 else 0
                    streams.append(
                        (
                            lambda s: bias_ref.at[bb, bh, pl.ds(qi * bq, bq), pl.ds(s * bk, bk)],
                            b_ring,
                            b_full,
                        )
                    )
                if has_seg:
                    streams.append((lambda s: ks_ref.at[bi, pl.ds(s * bk, bk)], ks_ring, ks_full))
                _produce(0, steps, stages, streams, consumed, most=n_k)

            @pl.when(wg < nc)
            def _compute():
                plgpu.set_max_registers(232 if nc > 1 else 240, action="increase")
                q0 = qi * bq + wg * _ROWS
                my_q = q_smem.at[wg]
                plgpu.copy_gmem_to_smem(q_ref.at[bi, pl.ds(q0, _ROWS), hi], my_q, q_bar.at[wg])
                q_ids = None
                if has_seg:
                    plgpu.copy_gmem_to_smem(
                        qs_ref.at[bi, pl.ds(q0, _ROWS)], qs_smem.at[wg], qs_bar.at[wg]
                    )
                    plgpu.barrier_wait(qs_bar.at[wg])
                    q_ids = plgpu.load(qs_smem.at[wg], layout=plgpu.Layout.WGMMA.reduce(1))
                plgpu.barrier_wait(q_bar.at[wg])
                shape = (_ROWS, bk)

                def step(j, carry):
                    acc, m, l = carry
                    slot = lax.rem(j, stages)
                    plgpu.barrier_wait(k_full.at[slot])
                    s = _wgmma(my_q, k_ring.at[slot].T, shape) * (st.scale * _LOG2E)
                    if has_bias:
                        plgpu.barrier_wait(b_full.at[slot])
                        tile = b_ring.at[slot, pl.ds(wg * _ROWS, _ROWS)]
                        s = s + plgpu.load(tile, layout=plgpu.Layout.WGMMA) * _LOG2E
                    k_ids = None
                    if has_seg:
                        plgpu.barrier_wait(ks_full.at[slot])
                        k_ids = plgpu.load(ks_ring.at[slot], layout=plgpu.Layout.WGMMA.reduce(0))
                    vis = _visible(
                        st, shape, q0, j * bk, transposed=False, q_seg=q_ids, k_seg=k_ids
                    )
                    if vis is not None:
                        s = jnp.where(vis, s, -jnp.inf)
                    m_new = jnp.maximum(m, s.max(axis=1))
                    m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
                    alpha = jnp.exp2(m - m_safe)
                    p = jnp.exp2(s - _rows(m_safe, shape))
                    l = l * alpha + p.sum(axis=1)
                    acc = acc * _rows(alpha, acc.shape)
                    plgpu.barrier_wait(v_full.at[slot])
                    my_stage = None if stage is None else stage.at[wg]
                    acc = _wgmma_acc(acc, p.astype(dt), v_ring.at[slot], st, my_stage)
                    plgpu.barrier_arrive(consumed.at[slot])
                    return acc, m_new, l

                init = (_zeros((_ROWS, d)), _zeros((_ROWS,)) - jnp.inf, _zeros((_ROWS,)))
                acc, m, l = lax.fori_loop(0, steps, step, init)
                seen = l > 0
                l_safe = jnp.where(seen, l, 1.0)
                my_q[...] = (acc / _rows(l_safe, acc.shape)).astype(dt)
                lse_smem.at[wg][...] = jnp.where(seen, (m + jnp.log2(l_safe)) / _LOG2E, jnp.inf)
                plgpu.commit_smem()
                plgpu.copy_smem_to_gmem(my_q, out_ref.at[bi, pl.ds(q0, _ROWS), hi])
                plgpu.copy_smem_to_gmem(lse_smem.at[wg], lse_ref.at[bi, hi, pl.ds(q0, _ROWS)])
                plgpu.wait_smem_to_gmem(0)

        ring = functools.partial(plgpu.Barrier, num_barriers=stages)
        pl.run_scoped(
            lambda *a: body(*a[:8], a[8:]),
            _smem((nc, _ROWS, d), dt),
            plgpu.SMEM((nc, _ROWS), jnp.float32),
            plgpu.SMEM((nc, _ROWS), jnp.int32) if has_seg else None,
            _smem((stages, bk, d), dt),
            _smem((stages, bk, d), dt),
            _smem((stages, bq, bk), jnp.float32) if has_bias else None,
            plgpu.SMEM((stages, bk), jnp.int32) if has_seg else None,
            _staging((nc, _ROWS, bk), dt, st),
            plgpu.Barrier(num_barriers=nc),
            plgpu.Barrier(num_barriers=nc),
            ring(),
            ring(),
            ring(),
            ring(),
            plgpu.Barrier(num_arrivals=nc, num_barriers=stages),
            collective_axes="wg",
        )

    args = [q, k, v] + ([bias] if has_bias else []) + ([q_seg, kv_seg] if has_seg else [])
    out_type = (
        jax.ShapeDtypeStruct(q.shape, dt),
        jax.ShapeDtypeStruct((b_sz, h, lq), jnp.float32),
    )
    return plgpu.kernel(
        kernel,
        out_type=out_type,
        grid=(lq // bq, h, b_sz),
        grid_names=("q", "heads", "batch"),
        num_threads=nc + 1,
        thread_name="wg",
        interpret=st.interpret,
    )(*args)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------


def _dq_kernel_call(q, k, v, bias, q_seg, kv_seg, do, lse, delta, st: _Static):
    """dq (B, Lq, H, D) in q.dtype and, with a bias, ds (B, H, Lq, Lk) float32."""
    b_sz, lq, h, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    group = h // hkv
    bk, stages = st.block_k, st.stages
    n_k = lk // bk
    has_bias, has_seg = bias is not None, q_seg is not None
    dt = q.dtype
    shape = (_ROWS, bk)

    def kernel(*refs):
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, *rest = refs
        bias_ref = rest.pop(0) if has_bias else None
        qs_ref, ks_ref = (rest.pop(0), rest.pop(0)) if has_seg else (None, None)
        dq_ref = rest.pop(0)
        ds_ref = rest.pop(0) if has_bias else None
        bi, hi, qi = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("q")
        q0 = qi * _ROWS
        steps = _causal_kv_steps(st, q0 + _ROWS, n_k)

        def body(q_smem, do_smem, vec_smem, qs_smem, ds_smem, k_ring, v_ring, b_ring, ks_ring,
                 stage, bars):  # fmt: skip
            own, k_full, v_full, b_full, ks_full, consumed = bars
            wg = lax.axis_index("wg")

            @pl.when(wg == 1)
            def _producer():
                plgpu.set_max_registers(40, action="decrease")
                kvh = lax.div(hi, group)
                streams = [
                    (lambda s: k_ref.at[bi, pl.ds(s * bk, bk), kvh], k_ring, k_full),
                    (lambda s: v_ref.at[bi, pl.ds(s * bk, bk), kvh], v_ring, v_full),
                ]
                if has_bias:
                    bb = bi if bias.shape[0] > 1 else 0
                    bh = hi if bias.shape[1] > 1 else 0
                    streams.append(
                        (
                            lambda s: bias_ref.at[bb, bh, pl.ds(q0, _ROWS), pl.ds(s * bk, bk)],
                            b_ring,
                            b_full,
                        )
                    )
                if has_seg:
                    streams.append((lambda s: ks_ref.at[bi, pl.ds(s * bk, bk)], ks_ring, ks_full))
                _produce(0, steps, stages, streams, consumed, most=n_k)

            @pl.when(wg == 0)
            def _compute():
                plgpu.set_max_registers(240, action="increase")
                rows = (bi, pl.ds(q0, _ROWS), hi)
                plgpu.copy_gmem_to_smem(q_ref.at[rows], q_smem, own.at[0])
                plgpu.copy_gmem_to_smem(do_ref.at[rows], do_smem, own.at[1])
                plgpu.copy_gmem_to_smem(
                    lse_ref.at[bi, hi, pl.ds(q0, _ROWS)], vec_smem.at[0], own.at[2]
                )
                plgpu.copy_gmem_to_smem(
                    delta_ref.at[bi, hi, pl.ds(q0, _ROWS)], vec_smem.at[1], own.at[3]
                )
                if has_seg:
                    plgpu.copy_gmem_to_smem(qs_ref.at[bi, pl.ds(q0, _ROWS)], qs_smem, own.at[4])
                    plgpu.barrier_wait(own.at[4])
                for i in range(4):
                    plgpu.barrier_wait(own.at[i])
                reduce1 = plgpu.Layout.WGMMA.reduce(1)
                lse2 = plgpu.load(vec_smem.at[0], layout=reduce1) * _LOG2E
                delta = plgpu.load(vec_smem.at[1], layout=reduce1)
                q_ids = plgpu.load(qs_smem, layout=reduce1) if has_seg else None

                def step(j, dq):
                    slot = lax.rem(j, stages)
                    plgpu.barrier_wait(k_full.at[slot])
                    s = _wgmma(q_smem, k_ring.at[slot].T, shape) * (st.scale * _LOG2E)
                    if has_bias:
                        plgpu.barrier_wait(b_full.at[slot])
                        s = s + plgpu.load(b_ring.at[slot], layout=plgpu.Layout.WGMMA) * _LOG2E
                    k_ids = None
                    if has_seg:
                        plgpu.barrier_wait(ks_full.at[slot])
                        k_ids = plgpu.load(ks_ring.at[slot], layout=plgpu.Layout.WGMMA.reduce(0))
                    vis = _visible(
                        st, shape, q0, j * bk, transposed=False, q_seg=q_ids, k_seg=k_ids
                    )
                    if vis is not None:
                        s = jnp.where(vis, s, -jnp.inf)
                    p = jnp.exp2(s - _rows(lse2, shape))
                    plgpu.barrier_wait(v_full.at[slot])
                    dp = _wgmma(do_smem, v_ring.at[slot].T, shape)
                    ds = p * (dp - _rows(delta, shape))
                    if has_bias:
                        plgpu.wait_smem_to_gmem(0)  # the previous tile has left ds_smem
                        ds_smem[...] = ds
                        plgpu.commit_smem()
                        plgpu.copy_smem_to_gmem(
                            ds_smem, ds_ref.at[bi, hi, pl.ds(q0, _ROWS), pl.ds(j * bk, bk)]
                        )
                    dq = _wgmma_acc(dq, ds.astype(dt), k_ring.at[slot], st, stage)
                    plgpu.barrier_arrive(consumed.at[slot])
                    return dq

                dq = lax.fori_loop(0, steps, step, _zeros((_ROWS, d)))
                if has_bias and st.causal:  # tiles past the diagonal: the bias gets no gradient
                    plgpu.wait_smem_to_gmem(0)
                    ds_smem[...] = _zeros(shape)
                    plgpu.commit_smem()

                    @pl.loop(steps, n_k)
                    def _(j):
                        plgpu.copy_smem_to_gmem(
                            ds_smem, ds_ref.at[bi, hi, pl.ds(q0, _ROWS), pl.ds(j * bk, bk)]
                        )

                plgpu.wait_smem_to_gmem(0)
                q_smem[...] = (dq * st.scale).astype(dt)
                plgpu.commit_smem()
                plgpu.copy_smem_to_gmem(q_smem, dq_ref.at[rows])
                plgpu.wait_smem_to_gmem(0)

        ring = functools.partial(plgpu.Barrier, num_barriers=stages)
        pl.run_scoped(
            lambda *a: body(*a[:10], a[10:]),
            _smem((_ROWS, d), dt),
            _smem((_ROWS, d), dt),
            plgpu.SMEM((2, _ROWS), jnp.float32),
            plgpu.SMEM((_ROWS,), jnp.int32) if has_seg else None,
            _smem((_ROWS, bk), jnp.float32) if has_bias else None,
            _smem((stages, bk, d), dt),
            _smem((stages, bk, d), dt),
            _smem((stages, _ROWS, bk), jnp.float32) if has_bias else None,
            plgpu.SMEM((stages, bk), jnp.int32) if has_seg else None,
            _staging((_ROWS, bk), dt, st),
            plgpu.Barrier(num_barriers=5),
            ring(),
            ring(),
            ring(),
            ring(),
            plgpu.Barrier(num_arrivals=1, num_barriers=stages),
            collective_axes="wg",
        )

    args = [q, k, v, do, lse, delta]
    args += ([bias] if has_bias else []) + ([q_seg, kv_seg] if has_seg else [])
    out_type = [jax.ShapeDtypeStruct(q.shape, dt)]
    if has_bias:
        out_type.append(jax.ShapeDtypeStruct((b_sz, h, lq, lk), jnp.float32))
    outs = plgpu.kernel(
        kernel,
        out_type=tuple(out_type),
        grid=(lq // _ROWS, h, b_sz),
        grid_names=("q", "heads", "batch"),
        num_threads=2,
        thread_name="wg",
        interpret=st.interpret,
    )(*args)
    return outs[0], (outs[1] if has_bias else None)


def _dkdv_kernel_call(q, k, v, bias_t, q_seg, kv_seg, do, lse, delta, st: _Static):
    """dk, dv per query head: (B, Lk, H, D) float32 each. ``bias_t``: (1|B, 1|H, Lk, Lq)."""
    b_sz, lq, h, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    group = h // hkv
    bk, stages = st.block_k, st.stages
    bq = _ROWS  # query rows per streamed block
    n_q = lq // bq
    has_bias, has_seg = bias_t is not None, q_seg is not None
    dt = q.dtype
    shape = (bk, bq)  # rows: keys, columns: queries

    def kernel(*refs):
        q_ref, k_ref, v_ref, do_ref, vec_ref, *rest = refs
        bias_ref = rest.pop(0) if has_bias else None
        qs_ref, ks_ref = (rest.pop(0), rest.pop(0)) if has_seg else (None, None)
        dk_ref, dv_ref = rest
        bi, hi, ki = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("k")
        k0 = ki * bk
        first = lax.div(k0, bq) if st.causal else 0  # query blocks before it see none of these keys

        def body(k_smem, v_smem, ks_smem, out_smem, q_ring, do_ring, vec_ring, b_ring, qs_ring,
                 stage, bars):  # fmt: skip
            own, q_full, do_full, vec_full, b_full, qs_full, consumed = bars
            wg = lax.axis_index("wg")

            @pl.when(wg == 1)
            def _producer():
                plgpu.set_max_registers(40, action="decrease")
                streams = [
                    (lambda s: q_ref.at[bi, pl.ds(s * bq, bq), hi], q_ring, q_full),
                    (lambda s: do_ref.at[bi, pl.ds(s * bq, bq), hi], do_ring, do_full),
                    (lambda s: vec_ref.at[bi, hi, :, pl.ds(s * bq, bq)], vec_ring, vec_full),
                ]
                if has_bias:
                    bb = bi if bias_t.shape[0] > 1 else 0
                    bh = hi if bias_t.shape[1] > 1 else 0
                    streams.append(
                        (
                            lambda s: bias_ref.at[bb, bh, pl.ds(k0, bk), pl.ds(s * bq, bq)],
                            b_ring,
                            b_full,
                        )
                    )
                if has_seg:
                    streams.append((lambda s: qs_ref.at[bi, pl.ds(s * bq, bq)], qs_ring, qs_full))
                _produce(first, n_q, stages, streams, consumed, most=n_q)

            @pl.when(wg == 0)
            def _compute():
                plgpu.set_max_registers(240, action="increase")
                kvh = lax.div(hi, group)
                keys = (bi, pl.ds(k0, bk), kvh)
                plgpu.copy_gmem_to_smem(k_ref.at[keys], k_smem, own.at[0])
                plgpu.copy_gmem_to_smem(v_ref.at[keys], v_smem, own.at[1])
                k_ids = None
                if has_seg:
                    plgpu.copy_gmem_to_smem(ks_ref.at[bi, pl.ds(k0, bk)], ks_smem, own.at[2])
                    plgpu.barrier_wait(own.at[2])
                    k_ids = plgpu.load(ks_smem, layout=plgpu.Layout.WGMMA.reduce(1))
                plgpu.barrier_wait(own.at[0])
                plgpu.barrier_wait(own.at[1])
                reduce0 = plgpu.Layout.WGMMA.reduce(0)

                def step(i, carry):
                    dk, dv = carry
                    slot = lax.rem(i - first, stages)
                    plgpu.barrier_wait(q_full.at[slot])
                    plgpu.barrier_wait(vec_full.at[slot])
                    s = _wgmma(k_smem, q_ring.at[slot].T, shape) * (st.scale * _LOG2E)
                    if has_bias:
                        plgpu.barrier_wait(b_full.at[slot])
                        s = s + plgpu.load(b_ring.at[slot], layout=plgpu.Layout.WGMMA) * _LOG2E
                    q_ids = None
                    if has_seg:
                        plgpu.barrier_wait(qs_full.at[slot])
                        q_ids = plgpu.load(qs_ring.at[slot], layout=reduce0)
                    vis = _visible(st, shape, k0, i * bq, transposed=True, q_seg=q_ids, k_seg=k_ids)
                    if vis is not None:
                        s = jnp.where(vis, s, -jnp.inf)
                    lse2 = plgpu.load(vec_ring.at[slot, 0], layout=reduce0) * _LOG2E
                    delta = plgpu.load(vec_ring.at[slot, 1], layout=reduce0)
                    p_t = jnp.exp2(s - _cols(lse2, shape))
                    plgpu.barrier_wait(do_full.at[slot])
                    dv = _wgmma_acc(dv, p_t.astype(dt), do_ring.at[slot], st, stage)
                    dp_t = _wgmma(v_smem, do_ring.at[slot].T, shape)
                    ds_t = p_t * (dp_t - _cols(delta, shape))
                    dk = _wgmma_acc(dk, ds_t.astype(dt), q_ring.at[slot], st, stage)
                    plgpu.barrier_arrive(consumed.at[slot])
                    return dk, dv

                init = (_zeros((bk, d)), _zeros((bk, d)))
                dk, dv = lax.fori_loop(first, n_q, step, init)
                out_smem.at[0][...] = dk * st.scale
                out_smem.at[1][...] = dv
                plgpu.commit_smem()
                rows = (bi, pl.ds(k0, bk), hi)
                plgpu.copy_smem_to_gmem(out_smem.at[0], dk_ref.at[rows])
                plgpu.copy_smem_to_gmem(out_smem.at[1], dv_ref.at[rows])
                plgpu.wait_smem_to_gmem(0)

        ring = functools.partial(plgpu.Barrier, num_barriers=stages)
        pl.run_scoped(
            lambda *a: body(*a[:10], a[10:]),
            _smem((bk, d), dt),
            _smem((bk, d), dt),
            plgpu.SMEM((bk,), jnp.int32) if has_seg else None,
            _smem((2, bk, d), jnp.float32),
            _smem((stages, bq, d), dt),
            _smem((stages, bq, d), dt),
            plgpu.SMEM((stages, 2, bq), jnp.float32),
            _smem((stages, bk, bq), jnp.float32) if has_bias else None,
            plgpu.SMEM((stages, bq), jnp.int32) if has_seg else None,
            _staging((bk, bq), dt, st),
            plgpu.Barrier(num_barriers=3),
            ring(),
            ring(),
            ring(),
            ring(),
            ring(),
            plgpu.Barrier(num_arrivals=1, num_barriers=stages),
            collective_axes="wg",
        )

    # lse and delta travel together, (B, H, 2, Lq): one TMA per query block for both.
    vecs = jnp.stack([lse, delta], axis=2)
    args = [q, k, v, do, vecs]
    args += ([bias_t] if has_bias else []) + ([q_seg, kv_seg] if has_seg else [])
    grad_type = jax.ShapeDtypeStruct((b_sz, lk, h, d), jnp.float32)
    return plgpu.kernel(
        kernel,
        out_type=(grad_type, grad_type),
        grid=(lk // bk, h, b_sz),
        grid_names=("k", "heads", "batch"),
        num_threads=2,
        thread_name="wg",
        interpret=st.interpret,
    )(*args)


def _backward(q, k, v, bias, q_seg, kv_seg, out, lse, do, st: _Static):
    b_sz, lk, hkv, d = k.shape
    h = q.shape[2]
    delta = jnp.einsum("bqhd,bqhd->bhq", out.astype(jnp.float32), do.astype(jnp.float32))
    do = do.astype(q.dtype)
    dq, ds = _dq_kernel_call(q, k, v, bias, q_seg, kv_seg, do, lse, delta, st)
    bias_t = None if bias is None else jnp.swapaxes(bias, 2, 3)
    dk, dv = _dkdv_kernel_call(q, k, v, bias_t, q_seg, kv_seg, do, lse, delta, st)
    group = h // hkv
    dk = dk.reshape(b_sz, lk, hkv, group, d).sum(axis=3).astype(k.dtype)
    dv = dv.reshape(b_sz, lk, hkv, group, d).sum(axis=3).astype(v.dtype)
    dbias = None
    if bias is not None:
        axes = tuple(i for i in (0, 1) if bias.shape[i] == 1)
        dbias = ds.sum(axis=axes, keepdims=True).astype(bias.dtype)
    return dq, dk, dv, dbias


# ----------------------------------------------------------------------------------------------
# custom_vjp on padded arrays; padding/slicing outside is differentiated by JAX itself.
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _mosaic_padded(q, k, v, bias, q_seg, kv_seg, st: _Static):
    return _forward(q, k, v, bias, q_seg, kv_seg, st)


def _mosaic_padded_fwd(q, k, v, bias, q_seg, kv_seg, st: _Static):
    out, lse = _forward(q, k, v, bias, q_seg, kv_seg, st)
    return (out, lse), (q, k, v, bias, q_seg, kv_seg, out, lse)


def _mosaic_padded_bwd(st: _Static, res, cts):
    q, k, v, bias, q_seg, kv_seg, out, lse = res
    do, _ = cts  # lse is a residual, not a model output
    dq, dk, dv, dbias = _backward(q, k, v, bias, q_seg, kv_seg, out, lse, do, st)
    return dq, dk, dv, dbias, None, None


_mosaic_padded.defvjp(_mosaic_padded_fwd, _mosaic_padded_bwd)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def flash_attention_mosaic(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    scale: float | None = None,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    bias: jax.Array | None = None,
    block_k: int = 64,
    compute_wgs: int | None = None,
    stages: int = 2,
    interpret: bool | plgpu.InterpretGPUParams | None = None,
    return_lse: bool = False,
):
    """Mosaic GPU flash attention (differentiable in q, k, v and the bias).

    Args:
      q, k, v: (B, Lq, H, D), (B, Lk, Hkv, D), (B, Lk, Hkv, D); bf16 or fp16, D 64 or 128.
      causal: top-left causal mask.
      scale: logits scale, default ``1/sqrt(D)``.
      q_segment_ids, kv_segment_ids: optional (B, Lq), (B, Lk) int ids; equal ids attend.
      bias: optional additive logits bias (1|B, 1|H, Lq, Lk), added after the scale; its
        gradient costs one float32 (B, H, Lq, Lk) array in the backward pass.
      block_k: keys per streamed block (a multiple of 64).
      compute_wgs: compute warpgroups per forward program (64 query rows each); default 2,
        or 1 when Lq <= 64 (short sequences, e.g. the AViT's axial attention).
      stages: ring slots per streamed array (>= 1).
      interpret: run Mosaic GPU's interpreter (True, or its ``InterpretGPUParams``, e.g.
        ``detect_races=True``); default: True unless the backend is a GPU.
      return_lse: also return the natural-log log-sum-exp (B, H, Lq), float32.

    Returns:
      ``out`` (B, Lq, H, D) in ``q.dtype``, or ``(out, lse)``.
    """
    check_shapes(q, k, v)
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("flash_attention_mosaic: give both segment id arrays or neither")
    check_segment_ids(q, k, q_segment_ids, kv_segment_ids)
    reason = unsupported_reason(q, k, v)
    if reason is not None:
        raise ValueError(f"flash_attention_mosaic: {reason}")
    b, lq, h, d = q.shape
    lk = k.shape[1]
    if bias is not None and (
        bias.ndim != 4
        or bias.shape[0] not in (1, b)
        or bias.shape[1] not in (1, h)
        or tuple(bias.shape[2:]) != (lq, lk)
    ):
        raise ValueError(
            f"flash_attention_mosaic: bias has shape {tuple(bias.shape)}; it must be "
            f"(1 or {b}, 1 or {h}, {lq}, {lk})"
        )
    if block_k % 64 or block_k <= 0:
        raise ValueError(f"flash_attention_mosaic: block_k={block_k} must be a multiple of 64")
    if stages < 1:
        raise ValueError(f"flash_attention_mosaic: stages={stages} must be >= 1")
    if compute_wgs is None:
        compute_wgs = 1 if lq <= _ROWS else 2
    if compute_wgs not in (1, 2):
        raise ValueError(f"flash_attention_mosaic: compute_wgs={compute_wgs} must be 1 or 2")
    if 0 in (b, lq, h, lk):
        out = jnp.zeros_like(q)
        lse = jnp.full((b, h, lq), jnp.inf if lk == 0 else 0.0, jnp.float32)
        return (out, lse) if return_lse else out
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    if interpret is True:
        interpret = plgpu.InterpretGPUParams()
    lq_pad = _round_up(lq, compute_wgs * _ROWS)
    lk_pad = _round_up(lk, block_k)
    st = _Static(
        causal=bool(causal),
        scale=1.0 / math.sqrt(d) if scale is None else float(scale),
        kv_len=lk,
        block_k=block_k,
        compute_wgs=compute_wgs,
        stages=stages,
        interpret=interpret or None,
    )

    def pad(x, length):
        return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))

    qp, kp, vp = pad(q, lq_pad), pad(k, lk_pad), pad(v, lk_pad)
    q_seg = kv_seg = None
    if q_segment_ids is not None:
        # Padded keys are masked by position already; padded queries are sliced away.
        q_seg = jnp.pad(q_segment_ids.astype(jnp.int32), ((0, 0), (0, lq_pad - lq)))
        kv_seg = jnp.pad(kv_segment_ids.astype(jnp.int32), ((0, 0), (0, lk_pad - lk)))
    bias_p = None
    if bias is not None:
        bias_p = jnp.pad(
            bias.astype(jnp.float32), ((0, 0), (0, 0), (0, lq_pad - lq), (0, lk_pad - lk))
        )
    out, lse = _mosaic_padded(qp, kp, vp, bias_p, q_seg, kv_seg, st)
    out = out[:, :lq]
    if return_lse:
        return out, lse[:, :, :lq]
    return out
