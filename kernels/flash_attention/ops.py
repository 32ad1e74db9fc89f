"""The public flash-attention op: runs the kernel named, or the reference with a reason.

``flash_attention(q, k, v, ..., impl="pallas")`` runs ``pallas`` or ``triton`` where they can
run and otherwise the plain-``jnp`` reference, logging why once per distinct reason (never per
call: inside a training step the message would repeat every trace). ``fallback_reason``
exposes the same decision so a caller with more choices can use it without running anything.
Choosing among kernels ("auto": cuDNN, Pallas or XLA, per device and per call) happens in one
place only, ``jaxfm.nn.attention.dot_product_attention``; this op runs what it is told.

Where each kernel runs:
* ``pallas``: NVIDIA GPUs (Pallas' Triton lowering) and, in interpret mode, any backend; on a
  non-GPU backend it is only chosen when asked for by name (interpret mode is for tests).
* ``mosaic``: Hopper and newer NVIDIA GPUs (Pallas' Mosaic GPU backend, FlashAttention-3's
  design), bf16/fp16, head_dim 64 or 128; elsewhere Mosaic GPU's interpreter (tests).
* ``triton``: NVIDIA GPUs with ``jax_triton`` importable; ``triton_call`` has no CPU lowering.
* ``reference``: everywhere.
"""

from __future__ import annotations

import logging

import jax

from kernels.flash_attention.reference import (
    attention_reference,
    check_segment_ids,
    check_shapes,
)

__all__ = ["flash_attention", "fallback_reason", "log_once", "KERNEL_IMPLS"]

KERNEL_IMPLS = ("pallas", "mosaic", "triton", "reference")
_logger = logging.getLogger(__name__)
_logged: set[str] = set()


def log_once(logger: logging.Logger, message: str, level: int = logging.WARNING) -> bool:
    """Log ``message`` the first time it is seen in this process; return whether it logged."""
    if message in _logged:
        return False
    _logged.add(message)
    logger.log(level, message)
    return True


def _triton_import_error() -> str | None:
    try:
        import jax_triton  # noqa: F401
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or jax_triton's "requires GPU support" error
        return f"jax_triton/triton not importable ({type(e).__name__}: {str(e)[:80]})"
    return None


def fallback_reason(
    impl: str, q: jax.Array, k: jax.Array, v: jax.Array, *, backend: str | None = None
) -> str | None:
    """Why kernel ``impl`` cannot run these inputs here, or None if it can.

    Args:
      impl: ``"pallas"``, ``"mosaic"`` or ``"triton"``.
      q, k, v: the attention inputs (only shapes, dtypes and the backend matter).
      backend: the backend the call is lowered for (default: ``jax.default_backend()``);
        ``"gpu"`` asks whether the kernel can serve a lowering for CUDA from any host.
    """
    backend = backend or jax.default_backend()
    check_shapes(q, k, v)
    dtypes = {str(x.dtype) for x in (q, k, v)}
    if len(dtypes) != 1 or dtypes.pop() not in ("bfloat16", "float16", "float32"):
        return f"dtypes {q.dtype}/{k.dtype}/{v.dtype} (need one of bf16, fp16, fp32 for all)"
    d = q.shape[-1]
    if d > 256:
        return f"head_dim {d} > 256 (tiles would not fit in shared memory)"
    if impl == "pallas":
        return None
    if impl == "mosaic":
        try:
            from kernels.flash_attention.mosaic import unsupported_reason
        except ImportError as e:  # a jax without Pallas' Mosaic GPU backend
            return f"mosaic not importable ({type(e).__name__}: {str(e)[:80]})"
        return unsupported_reason(q, k, v)
    if impl == "triton":
        if backend != "gpu":
            return f"triton has no lowering for backend {backend!r}"
        return _triton_import_error()
    raise ValueError(
        f"fallback_reason: unknown kernel impl {impl!r}; choose pallas, mosaic or triton"
    )


def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = False,
    scale: float | None = None,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    impl: str,
    backend: str | None = None,
    bias: jax.Array | None = None,
) -> jax.Array:
    """Flash attention through the best available kernel (see module docstring).

    Args:
      q, k, v: (B, Lq, H, D), (B, Lk, Hkv, D), (B, Lk, Hkv, D).
      causal: top-left causal mask.
      scale: logits scale, default ``1/sqrt(D)``.
      q_segment_ids, kv_segment_ids: optional (B, Lq), (B, Lk) int ids; equal ids attend.
      impl: ``pallas``, ``mosaic``, ``triton`` or ``reference`` (no ``auto``: that choice
        belongs to ``jaxfm.nn.attention``).
      backend: the backend the call is lowered for (default: ``jax.default_backend()``);
        ``"gpu"`` builds the GPU kernels whatever the host (a branch of
        ``lax.platform_dependent``, an export for CUDA), anything else interprets Pallas
        (or Mosaic GPU).
      bias: additive logits bias (1|B, 1|H, Lq, Lk): Pallas, Mosaic and the reference take
        it, the Triton kernel does not (it falls back to the reference).

    Returns:
      (B, Lq, H, D) in ``q.dtype``.
    """
    if impl not in KERNEL_IMPLS:
        raise ValueError(
            f"flash_attention: unknown impl {impl!r}; choose one of {KERNEL_IMPLS} (to choose "
            "automatically, call jaxfm.nn.attention.dot_product_attention with impl='auto')"
        )
    check_shapes(q, k, v)
    check_segment_ids(q, k, q_segment_ids, kv_segment_ids)
    kwargs = dict(
        causal=causal, scale=scale, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids
    )
    order = () if impl == "reference" else (impl,)
    interpret = None if backend is None else backend != "gpu"
    for cand in order:
        reason = fallback_reason(cand, q, k, v, backend=backend)
        if reason is None and bias is not None and cand == "triton":
            reason = "triton takes no additive bias"
        if reason is None:
            if cand == "pallas":
                from kernels.flash_attention.pallas import flash_attention_pallas

                return flash_attention_pallas(q, k, v, interpret=interpret, bias=bias, **kwargs)
            if cand == "mosaic":
                from kernels.flash_attention.mosaic import flash_attention_mosaic

                return flash_attention_mosaic(q, k, v, interpret=interpret, bias=bias, **kwargs)
            from kernels.flash_attention.triton import flash_attention_triton

            return flash_attention_triton(q, k, v, **kwargs)
        log_once(_logger, f"flash_attention: {cand} unavailable: {reason}; using the reference")
    return attention_reference(q, k, v, bias=bias, **kwargs)
