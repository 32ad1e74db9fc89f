"""The raw Triton kernels compile ahead of time to sm_90 (H100/H200) cubins, without a GPU.

Triton wheels ship ``ptxas``, so ``triton.compile`` with a ``GPUTarget`` builds real cubins on a
CPU-only machine. This checks what the interpreter cannot: that the kernels pass Triton's
type checks and layout passes for tensor cores (bf16 MMA, no interpreter upcast), and that the
tuned tiles fit the shared memory of the target. Run by ``make test-triton`` in the same venv as
the interpreter tests, but in a process *without* TRITON_INTERPRET (under it ``@triton.jit``
builds interpreter functions that cannot be compiled). Speed still needs a GPU.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.triton_interpret

if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("compile checks need TRITON_INTERPRET unset", allow_module_level=True)
triton = pytest.importorskip("triton")

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.flash_attention import triton_kernels as tk  # noqa: E402

TABLE = os.path.join(os.path.dirname(tk.__file__), "tuning_table.json")
# Opt-in shared memory per block: 227 KiB on sm_90 (H100/H200), CUDA programming guide.
SMEM_SM90 = 227 * 1024


def _blocks(head_dim):
    with open(TABLE) as f:
        per_d = json.load(f)["default"]["triton"]
    return per_d.get(f"d{head_dim}", per_d["default"])


def _signature(kernel, dtype):
    types = {
        "QSEG": "*i32",
        "KSEG": "*i32",
        "q_len": "i32",
        "kv_len": "i32",
        "scale": "fp32",
        "LSE": "*fp32",
        "DELTA": "*fp32",
        "DK": "*fp32",
        "DV": "*fp32",
    }
    return {name: types.get(name, f"*{dtype}") for name in kernel.arg_names}


@pytest.mark.parametrize(
    "kernel_name,head_dim",
    [
        ("flash_fwd_kernel", 128),
        ("flash_bwd_preprocess_kernel", 128),
        ("flash_bwd_dq_kernel", 128),
        ("flash_bwd_dkdv_kernel", 128),
        ("flash_fwd_kernel", 256),
    ],
)
def test_kernel_compiles_for_sm90(kernel_name, head_dim):
    kernel = getattr(tk, kernel_name)
    bs = _blocks(head_dim)
    backward = kernel_name == "flash_bwd_dkdv_kernel"
    meta = dict(
        NUM_HEADS=16,
        GROUP=2,
        head_dim=head_dim,
        HEAD_DIM=tk.head_dim_tile(head_dim),
        BLOCK_M=bs["block_q_bwd"] if backward else bs["block_q"],
        BLOCK_N=bs["block_k_bwd"] if backward else bs["block_k"],
        CAUSAL=True,
        HAS_SEG=True,
        DOT_PREC=tk.dot_precision("bfloat16"),
        UPCAST_DOT=False,
    )
    meta = {k: v for k, v in meta.items() if k in kernel.arg_names}
    sig = _signature(kernel, "bf16")
    sig.update({k: "constexpr" for k in meta})
    src = ASTSource(fn=kernel, signature=sig, constexprs=meta)
    compiled = triton.compile(
        src,
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": bs["num_warps"], "num_stages": bs["num_stages"]},
    )
    assert len(compiled.asm["cubin"]) > 0
    assert compiled.metadata.shared <= SMEM_SM90, compiled.metadata.shared


@pytest.mark.parametrize("scale_type", ["fp32", "fp64"])
def test_the_scale_must_reach_the_forward_as_fp32(scale_type):
    """jax-triton 0.3.1 types a Python-float argument as fp64; then the forward's running max
    turns fp64 inside the key loop and triton 3.6 refuses to compile it (what the GPU
    machine's stack did). ``triton.py`` passes ``np.float32(scale)``, typed fp32
    (``test_triton_jax.py::test_scalars_reach_triton_as_float32``); this shows both sides."""
    kernel = tk.flash_fwd_kernel
    bs = _blocks(64)
    meta = dict(NUM_HEADS=4, GROUP=1, head_dim=64, HEAD_DIM=64, BLOCK_M=bs["block_q"],
                BLOCK_N=bs["block_k"], CAUSAL=True, HAS_SEG=False,
                DOT_PREC=tk.dot_precision("bfloat16"), UPCAST_DOT=False)  # fmt: skip
    meta = {k: v for k, v in meta.items() if k in kernel.arg_names}
    sig = {**_signature(kernel, "bf16"), "scale": scale_type}
    sig.update({k: "constexpr" for k in meta})

    def compile_():
        return triton.compile(
            ASTSource(fn=kernel, signature=sig, constexprs=meta),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": bs["num_warps"], "num_stages": bs["num_stages"]},
        )

    if scale_type == "fp32":
        assert len(compile_().asm["cubin"]) > 0
    else:
        with pytest.raises(Exception, match="Loop-carried variable m .*fp64"):
            compile_()
