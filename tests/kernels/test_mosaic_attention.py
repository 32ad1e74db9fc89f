"""Mosaic GPU flash attention (Mosaic GPU's interpreter on CPU) against the float64 oracle.

The interpreter simulates the GPU's shared memory, barriers, TMA copies and warpgroups (one
thread each) and fills every allocation with NaN (an element a kernel forgets to write fails
the check). With ``detect_races=True`` it raises on loads, stores and copies the barriers do
not order; ``wgmma`` operand reads are not tracked yet (a missing wait before a matmul goes
unseen here: the interpreter completes copies at once), and jax 0.11's interpreter also
checks that every barrier phase is observed. Each case is compared through
``tests/kernels/oracle_check.py`` (error <= 2 x naive attention in the same dtype + a floor).
The GPU compile path (register operands, in-place accumulation) is checked by lowering for CUDA
in ``test_cuda_lowering.py`` and numerically only on a GPU (``test_gpu_numerics.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax.experimental.pallas import mosaic_gpu as plgpu

from kernels.flash_attention import mosaic
from kernels.flash_attention.ops import fallback_reason
from tests.kernels.cases import Case
from tests.kernels.oracle_check import check_against_oracle


def _run(case: Case, request, bias_shape=None, **kernel_kw):
    params = plgpu.InterpretGPUParams(detect_races=True)

    def attention(q, k, v, q_seg, kv_seg, bias):
        return mosaic.flash_attention_mosaic(
            q,
            k,
            v,
            causal=case.causal,
            q_segment_ids=q_seg,
            kv_segment_ids=kv_seg,
            bias=bias,
            interpret=params,
            return_lse=True,
            **kernel_kw,
        )

    check_against_oracle(case, request, attention, bias_shape)


FAST = [
    # Ragged (100 -> 128 rows, two compute warpgroups), GQA 2:1, causal (the producer and the
    # dK/dV loop start and stop at the diagonal).
    (Case("bfloat16", 1, 100, 100, 4, 2, 64, True, "none"), {}),
    # Lq != Lk, cross-attention segments, D 128, fp16; 3 key blocks through 2 ring slots.
    (Case("float16", 2, 70, 130, 2, 2, 128, False, "segments"), {}),
    # GQA 4:1, causal + packed segments + key padding (one batch element sees no key at all).
    (Case("bfloat16", 2, 96, 96, 4, 1, 64, True, "both"), {"compute_wgs": 1}),
    # One key block (fewer blocks than ring slots), 16 tokens: the AViT's axial attention.
    (Case("bfloat16", 2, 16, 16, 2, 2, 64, True, "none"), {}),
    # One ring slot (every step waits for the slot to come back), 128-key blocks.
    (Case("bfloat16", 1, 64, 200, 2, 1, 64, False, "padding"), {"stages": 1, "block_k": 128}),
]


@pytest.mark.parametrize("case, kw", FAST, ids=lambda x: str(x))
def test_mosaic_matches_oracle(case, kw, request):
    _run(case, request, **kw)


BIAS = [
    # the AViT's attention: 8 tokens, a per-head relative-position bias shared by the batch
    (Case("bfloat16", 4, 8, 8, 2, 2, 64, False, "none"), (1, 2)),
    # a per-head bias shared by the batch, causal, GQA, two key blocks
    (Case("bfloat16", 2, 100, 100, 4, 2, 64, True, "none"), (1, 4)),
    # a per-sample bias shared by the heads, fp16, segments + padding, Lq != Lk
    (Case("float16", 2, 48, 80, 2, 2, 64, False, "both"), (2, 1)),
]


@pytest.mark.parametrize("case, bias_shape", BIAS, ids=lambda x: str(x))
def test_mosaic_with_an_additive_bias_matches_oracle(case, bias_shape, request):
    _run(case, request, bias_shape)


@pytest.mark.parametrize(
    "dtype, d, why",
    [
        ("float32", 64, "bf16/fp16 only"),
        ("bfloat16", 88, "head_dim"),
        ("bfloat16", 256, "head_dim"),
    ],
)
def test_what_mosaic_cannot_take_is_named(dtype, d, why):
    q = jax.ShapeDtypeStruct((1, 64, 2, d), jnp.dtype(dtype))
    assert why in mosaic.unsupported_reason(q, q, q)
    assert why in fallback_reason("mosaic", q, q, q, backend="gpu")
    with pytest.raises(ValueError, match=why):
        mosaic.flash_attention_mosaic(
            jnp.zeros(q.shape, q.dtype), *(jnp.zeros(q.shape, q.dtype),) * 2
        )


def test_bad_arguments_raise_clear_errors():
    q = jnp.zeros((2, 16, 4, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"bias has shape .* must be \(1 or 2, 1 or 4, 16, 16\)"):
        mosaic.flash_attention_mosaic(q, q, q, bias=jnp.zeros((3, 4, 16, 16)))
    with pytest.raises(ValueError, match="block_k=96 must be a multiple of 64"):
        mosaic.flash_attention_mosaic(q, q, q, block_k=96)
    with pytest.raises(ValueError, match="both segment id arrays"):
        mosaic.flash_attention_mosaic(q, q, q, q_segment_ids=jnp.zeros((2, 16), jnp.int32))
