"""Pallas flash attention (interpret mode on CPU) against the float64 NumPy oracle.

Each case draws random inputs from a seed derived from its test id (``tests/kernels/cases.py``;
the seed is in every failure message), poisons every kernel
output buffer with NaN (so an element a kernel forgets to write fails the check), and compares
out, lse, dq, dk, dv with the oracle (``tests/kernels/oracle_check.py``: error <= 2 x the error
of naive attention in the same dtype, plus a per-dtype floor).

Interpret mode costs ~2-4 s per configuration, mostly XLA compilation; compiling at
``xla_backend_optimization_level=0`` halves that and changes no numerics we test (float ops are
not reassociated at any level on CPU). The fast set covers every feature once; the slow sweep
crosses them.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl

from kernels.flash_attention import pallas as fa_pallas
from kernels.flash_attention.tuning import BlockSizes
from tests.kernels.cases import Case
from tests.kernels.oracle_check import check_against_oracle


def _block_sizes(case: Case) -> BlockSizes | None:
    if case.blocks is None:
        return None  # the tuning table's sizes for this device and D
    m, n = case.blocks
    return BlockSizes(m, n, n, m)


def _run(case: Case, request, bias_shape=None):
    def attention(q, k, v, q_seg, kv_seg, bias):
        return fa_pallas.flash_attention_pallas(
            q,
            k,
            v,
            causal=case.causal,
            q_segment_ids=q_seg,
            kv_segment_ids=kv_seg,
            bias=bias,
            block_sizes=_block_sizes(case),
            interpret=True,
            poison=True,
            return_lse=True,
        )

    check_against_oracle(case, request, attention, bias_shape)


FAST = [
    # Many unequal blocks: causal loop bounds on both kernels, ragged tail (100 = 6x16 + 4).
    Case("float32", 1, 100, 100, 4, 2, 64, True, "none", (32, 16)),
    # Lq != Lk, cross-attention segments, default (tuned) blocks, D 128.
    Case("float32", 2, 70, 130, 2, 2, 128, False, "segments"),
    # bf16, GQA 4:1, causal + packed segments + key padding (one fully masked batch element).
    Case("bfloat16", 2, 96, 96, 4, 1, 64, True, "both", (32, 32)),
    # fp16, D 128, key padding with a fully masked batch element.
    Case("float16", 2, 80, 80, 2, 2, 128, False, "padding"),
    # D 256 where feasible (smaller tiles in the table), causal.
    Case("float32", 1, 40, 40, 2, 1, 256, True, "none"),
]


@pytest.mark.parametrize("case", FAST, ids=str)
def test_pallas_matches_oracle(case, request):
    _run(case, request)


BIAS = [
    # a per-head relative-position-style bias shared by the batch, causal, ragged, GQA
    (Case("float32", 2, 100, 100, 4, 2, 64, True, "none", (32, 16)), (1, 4)),
    # a per-sample bias shared by the heads, bf16, segments + padding, Lq != Lk
    (Case("bfloat16", 2, 48, 80, 2, 2, 64, False, "both", (16, 32)), (2, 1)),
]


@pytest.mark.parametrize("case, bias_shape", BIAS, ids=lambda x: str(x))
def test_pallas_with_an_additive_bias_matches_oracle(case, bias_shape, request):
    _run(case, request, bias_shape)


def test_a_bias_of_the_wrong_shape_is_a_clear_error():
    q = jnp.zeros((2, 16, 4, 32))
    for shape in ((3, 4, 16, 16), (1, 2, 16, 16), (1, 4, 16, 8), (4, 16, 16)):
        with pytest.raises(
            ValueError, match=r"bias has shape .* must be \(1 or 2, 1 or 4, 16, 16\)"
        ):
            fa_pallas.flash_attention_pallas(q, q, q, bias=jnp.zeros(shape), interpret=True)


SLOW = [
    Case(dt, b, l, l, h, hkv, d, causal, masks, (32, 32))
    for dt, causal, d, (b, l, h, hkv), masks in itertools.product(
        ("float32", "bfloat16", "float16"),
        (False, True),
        (64, 128),
        ((1, 128, 2, 2), (2, 77, 4, 2)),
        ("none", "both"),
    )
    if not (masks == "both" and l == 128)  # masks are swept on the ragged shape only
]


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=str)
def test_pallas_matches_oracle_sweep(case, request):
    _run(case, request)


def test_poisoned_outputs_expose_unwritten_elements():
    """The poisoning helper really pre-fills outputs: a kernel writing half leaves NaN."""

    def half_kernel(x_ref, _poison_ref, o_ref):
        o_ref[:4] = x_ref[:4] * 2

    shape = jax.ShapeDtypeStruct((8,), jnp.float32)
    extra, aliases = fa_pallas._poisoned([shape], 1)
    out = pl.pallas_call(
        half_kernel, out_shape=shape, input_output_aliases=aliases, interpret=True
    )(jnp.ones(8), *extra)
    out = np.asarray(out)
    assert np.all(out[:4] == 2) and np.all(np.isnan(out[4:]))


def test_bad_inputs_raise_clear_errors():
    q = jnp.zeros((1, 8, 4, 16))
    with pytest.raises(ValueError, match="multiple of kv heads"):
        fa_pallas.flash_attention_pallas(q, jnp.zeros((1, 8, 3, 16)), jnp.zeros((1, 8, 3, 16)))
    with pytest.raises(ValueError, match="both segment id arrays"):
        fa_pallas.flash_attention_pallas(q, q, q, q_segment_ids=jnp.zeros((1, 8), jnp.int32))


# Pallas' Triton backend warns that it is deprecated (see kernels/README.md, "Pallas on GPU").
@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated:DeprecationWarning")
@pytest.mark.parametrize("dtype,d", [("bfloat16", 128), ("float32", 64)])
def test_lowers_to_triton_for_an_abstract_h100(dtype, d):
    """Without a GPU: the kernels (fwd, dq, dk/dv) lower through Pallas' Triton backend for CUDA.

    This proves every op in the kernel bodies has a Triton lowering and the block specs are
    accepted for an sm_90 target; PTX compilation, shared-memory fit and speed need a GPU.
    """
    if not hasattr(jax.sharding, "AbstractDevice"):
        pytest.skip("this jax has no jax.sharding.AbstractDevice for ahead-of-time GPU lowering")
    dev = jax.sharding.AbstractDevice(
        device_kind="NVIDIA H100 80GB HBM3", num_cores=132, platform="gpu"
    )
    mesh = jax.sharding.AbstractMesh((1,), ("x",), abstract_device=dev)
    q = jnp.ones((2, 200, 4, d), dtype)
    k = jnp.ones((2, 200, 2, d), dtype)
    seg = jnp.zeros((2, 200), jnp.int32)

    def loss(q, k, v):
        out = fa_pallas.flash_attention_pallas(
            q, k, v, causal=True, q_segment_ids=seg, kv_segment_ids=seg, interpret=False
        )
        return out.astype(jnp.float32).sum()

    with jax.sharding.use_abstract_mesh(mesh):
        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        text = grad.trace(q, k, k).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 3  # forward, dq, dk/dv
