"""Lower a function for CUDA on any machine, and list the custom calls the lowering holds.

A GPU path that silently falls back to XLA still runs and still gives the right numbers, so
only the lowered program tells whether a fused kernel is used. ``jax.export`` lowers for a
platform the host does not have (``platforms=("cuda",)``); two things make that work on a
CPU machine:

* Pallas' Triton lowering asks the device for its compute capability. An abstract mesh over
  an abstract GPU device (``jax.sharding.AbstractDevice``, default an H200) answers instead.
  (Mosaic GPU's lowering asks nothing: it emits Mosaic MLIR that the GPU runtime compiles.)
* ``jax.export`` refuses custom calls without a serialization-compatibility guarantee
  (Pallas' Triton call, cuDNN attention). The module is only inspected, never serialized
  for later, so those checks are disabled for the targets named in ``ALLOWED``.

Used by ``tests/kernels/test_cuda_lowering.py`` on every CI run (no GPU needed).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable

import jax
from jax import export

#: Custom-call targets of jaxfm's GPU paths.
PALLAS_TRITON = "__gpu$xla.gpu.triton"
MOSAIC_GPU = "mosaic_gpu_v2"
TRITON_CALL = "triton_kernel_call"  # jax_triton.triton_call
CUDNN_ATTENTION = tuple(
    f"__cudnn$fmha{bias}Softmax{bwd}" for bias in ("", "ScaleBias") for bwd in ("", "Backward")
)
ALLOWED = (PALLAS_TRITON, MOSAIC_GPU, TRITON_CALL, *CUDNN_ATTENTION)
#: Compute capability of the abstract devices (what jax-triton compiles for).
COMPUTE_CAPABILITY = {"NVIDIA H200": 90, "NVIDIA H100": 90, "NVIDIA A100": 80}


def lower_for_cuda(fn: Callable, *args, device_kind: str = "NVIDIA H200") -> str:
    """The StableHLO text of ``jax.jit(fn)(*args)`` lowered for CUDA (args may be
    ``jax.ShapeDtypeStruct``).

    Under the abstract mesh first; jax refuses it for primitives whose lowering needs real
    devices (cuDNN attention, where jax's CUDA plugin is installed), and those lower without
    it (so one program cannot hold both Pallas-Triton and cuDNN calls here). ``triton_call``
    compiles for ``COMPUTE_CAPABILITY[device_kind]``."""
    from kernels.flash_attention.triton import lowering_target

    device = jax.sharding.AbstractDevice(device_kind=device_kind, num_cores=132, platform="cuda")
    mesh = jax.sharding.AbstractMesh((1,), ("x",), abstract_device=device)
    checks = [export.DisabledSafetyCheck.custom_call(t) for t in ALLOWED]

    def lower():
        exported = export.export(jax.jit(fn), platforms=("cuda",), disabled_checks=checks)(*args)
        return exported.mlir_module()

    with lowering_target(COMPUTE_CAPABILITY.get(device_kind, 90)):
        try:
            with jax.sharding.use_abstract_mesh(mesh):
                return lower()
        except ValueError as e:
            if "require devices to be present" not in str(e):
                raise
        return lower()


def custom_calls(text: str) -> collections.Counter:
    """How many times each custom-call target occurs in StableHLO ``text``."""
    return collections.Counter(re.findall(r"custom_call @([\w$.]+)", text))
