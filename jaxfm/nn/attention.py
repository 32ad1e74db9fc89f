"""The one attention entry point of jaxfm, and axial attention built on it.

Every model calls attention through :func:`dot_product_attention`, so fused kernels
(``kernels/flash_attention``) plug in everywhere by changing ``impl``:

* ``xla``: ``jax.nn.dot_product_attention(implementation="xla")``, materialised logits; runs
  everywhere and takes everything (additive ``bias``, arbitrary boolean ``mask``).
* ``cudnn``: ``jax.nn.dot_product_attention(implementation="cudnn")``; NVIDIA GPU, bf16/fp16,
  head_dim % 8 == 0 and <= 128 (<= 256 from compute capability 9.0 on).
* ``pallas`` / ``triton``: the flash-attention kernels of ``kernels/flash_attention``
  (FlashAttention-2, arXiv:2307.08691): causal or not, GQA, ``segment_ids`` and
  ``key_padding_mask``, no arbitrary ``mask``. ``pallas`` also takes an additive ``bias``
  broadcast over batch and/or heads (the AViT's relative-position bias), with its gradient;
  ``triton`` does not. ``pallas`` asked for by name on CPU runs in interpret mode (slow; for
  tests); ``triton`` needs a GPU.
* ``mosaic``: the Mosaic GPU kernels (FlashAttention-3's design, Hopper and newer): what
  ``pallas`` takes, in bf16/fp16 with head_dim 64 or 128. Off the GPU, XLA (the kernels'
  interpreter runs from ``kernels.flash_attention.mosaic`` directly, for tests).
* ``auto``: on a GPU the first of cuDNN, Mosaic (Hopper and newer), Pallas, XLA that supports
  the call (cuDNN is the fastest published baseline for fused attention; ``kernels.bench``
  measures ours against it); on CPU, XLA. Why a kernel was passed over is logged once.

An impl that cannot take a call falls back to ``xla`` and logs the reason once per distinct
reason (never per call, never an error).

The kernel is chosen for the platform the call is *lowered* for, not the machine it is traced
on: a named kernel (or the one ``auto`` picks on a GPU) goes into one branch of
``jax.lax.platform_dependent`` and XLA (Pallas: its interpreter) into the other, so
``jax.export(..., platforms=("cuda",))`` on a CPU machine holds the fused call, and the same
function run on the CPU takes XLA. What decides the fallback is then what holds on CUDA:
dtypes, head dim, bias and masks (cuDNN also needs ``jax.nn``'s cuDNN path to be traceable,
i.e. the CUDA plugin installed). ``auto`` looks at the default backend: on a CPU machine it is
XLA without a second branch, so CPU users trace nothing extra.

float64 (with ``jax_enable_x64``): ``jax.nn.dot_product_attention`` computes its softmax in
float32 whatever the input dtype, so float64 calls run the plain-``jnp`` reference of
``kernels/flash_attention`` in float64 instead (bias and mask included); the kernels and cuDNN
take no float64 and fall back to it, logging the impl and the dtype.

Masks are checked against the inputs: ``key_padding_mask`` must be (B, Lk) and segment ids
(B, Lq) / (B, Lk) exactly, since the kernels read them with the lengths of q and k (a shorter
array would leave the keys it does not cover visible). Concrete segment ids must be >= 0;
under ``jit`` they cannot be checked, and padded keys get an id no query carries, so a
negative id never makes a padded key visible.

Layout: q (batch, q_len, heads, head_dim); k, v (batch, kv_len, kv_heads, head_dim) with
heads % kv_heads == 0 (grouped-query attention). ``causal`` is top-left aligned (query i sees
keys j <= i), as in ``jax.nn``. Rows that see no key return 0 on every path.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from kernels.flash_attention.ops import fallback_reason, log_once
from kernels.flash_attention.reference import (
    accumulation_dtype,
    attention_reference,
    check_segment_ids,
    check_shapes,
    segments_from_padding,
)

IMPLS = ("auto", "xla", "cudnn", "mosaic", "pallas", "triton")
_logger = logging.getLogger(__name__)

SegmentIds = Int[Array, "b l"] | tuple[Int[Array, "b lq"], Int[Array, "b lk"]]


def _split_segments(segment_ids, q, k):
    """(q ids, kv ids) from the ``segment_ids`` argument, shapes checked against q and k."""
    lq, lk = q.shape[1], k.shape[1]
    if segment_ids is None:
        return None, None
    if isinstance(segment_ids, tuple | list):
        if len(segment_ids) != 2:
            raise ValueError("attention: segment_ids must be one (B, L) array or a (q, kv) pair")
        q_seg, kv_seg = (jnp.asarray(s) for s in segment_ids)
        check_segment_ids(q, k, q_seg, kv_seg, ("segment_ids[0]", "segment_ids[1]"))
        return q_seg, kv_seg
    if lq != lk:
        raise ValueError(
            f"attention: one segment_ids array needs q_len == kv_len (got {lq} and {lk}); "
            "pass a (q_segment_ids, kv_segment_ids) pair"
        )
    segment_ids = jnp.asarray(segment_ids)
    check_segment_ids(q, k, segment_ids, segment_ids, ("segment_ids", "segment_ids"))
    return segment_ids, segment_ids


def _check_padding_mask(key_padding_mask, k) -> None:
    if key_padding_mask is None:
        return
    want = (k.shape[0], k.shape[1])
    if tuple(key_padding_mask.shape) != want:
        raise ValueError(
            f"attention: key_padding_mask has shape {tuple(key_padding_mask.shape)} but k has "
            f"shape {tuple(k.shape)}; it must be (B, Lk) = {want}"
        )


def _reject_negative_ids(name: str, ids) -> None:
    """Concrete ids must be >= 0 (the documented contract); traced ids cannot be checked."""
    if ids is None or isinstance(ids, jax.core.Tracer) or ids.size == 0:
        return
    low = int(jnp.min(ids))
    if low < 0:
        raise ValueError(f"attention: {name} must be >= 0, got a minimum of {low}")


@functools.cache
def _cudnn_untraceable() -> str | None:
    """Why ``jax.nn``'s cuDNN attention cannot even be traced in this process (no CUDA plugin:
    "cuDNN is not detected"), or None. Cached: it is a property of the installation."""
    x = jax.ShapeDtypeStruct((1, 8, 1, 16), jnp.bfloat16)
    try:
        jax.eval_shape(lambda q: jax.nn.dot_product_attention(q, q, q, implementation="cudnn"), x)
    except Exception as e:  # RuntimeError from the cuDNN version check, or ImportError
        return f"cudnn cannot be traced here ({type(e).__name__}: {str(e)[:80]})"
    return None


def _cudnn_reason(q: jax.Array, k: jax.Array, bias) -> str | None:
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        return f"cudnn takes bf16/fp16 only (got {q.dtype})"
    if bias is not None and (q.shape[1] % 2 or k.shape[1] % 2):
        # cuDNN refuses a bias with an odd length when differentiated, at lowering time
        # ("Unsupported sequence length"); whether this call is differentiated is unknown here.
        return f"cudnn takes a bias only with even lengths (got Lq {q.shape[1]}, Lk {k.shape[1]})"
    d = q.shape[-1]
    gpu = jax.default_backend() == "gpu"
    cc = getattr(jax.devices()[0], "compute_capability", "0") if gpu else "0"
    max_d = 256 if float(cc) >= 9.0 else 128  # without a GPU to ask: the limit of every GPU
    if d % 8 or d > max_d:
        return f"cudnn needs head_dim % 8 == 0 and <= {max_d} on this GPU (got {d})"
    return None if gpu else _cudnn_untraceable()


_BIAS_KERNELS = ("pallas", "mosaic")
#: Kernels that run in an interpreter off the GPU (the rest take XLA there). Not Mosaic GPU:
#: its interpreter works through ordered callbacks, which ``lax.platform_dependent`` cannot
#: put beside a branch without them; ``kernels.flash_attention.mosaic`` runs it directly.
_INTERPRETED = ("pallas",)


def _mosaic_device_reason() -> str | None:
    """Why ``auto`` passes over Mosaic GPU on this machine's GPU (it needs sm_90+), or None."""
    cc = getattr(jax.devices()[0], "compute_capability", "0")
    if float(cc) < 9.0:
        return f"mosaic needs compute capability >= 9.0 (Hopper; this GPU has {cc})"
    return None


def _reason(impl, q, k, v, bias, mask) -> str | None:
    """Why ``impl`` cannot serve this call when it is lowered for CUDA, or None."""
    if impl == "xla":
        return None
    if impl == "cudnn":
        return _cudnn_reason(q, k, bias)
    if bias is not None and impl not in _BIAS_KERNELS:
        return f"{impl} takes no additive bias"
    if bias is not None and (
        bias.shape[0] not in (1, q.shape[0]) or bias.shape[1] not in (1, q.shape[2])
    ):
        return f"{impl} takes a bias of shape (1|B, 1|H, Lq, Lk), got {tuple(bias.shape)}"
    if mask is not None:
        return f"{impl} takes no arbitrary mask (use segment_ids or key_padding_mask)"
    return fallback_reason(impl, q, k, v, backend="gpu")


def _kernel_bias(bias, q, k):
    """``bias`` broadcast to the (1|B, 1|H, Lq, Lk) the Pallas kernel reads (None stays)."""
    if bias is None:
        return None
    shape = (bias.shape[0], bias.shape[1], q.shape[1], k.shape[1])
    return jnp.broadcast_to(bias, shape)


def _as_4d(x, name: str):
    # jax.nn wants 4-D bias/mask; accept (Lq, Lk) or (H, Lq, Lk) as the usual broadcasts.
    if x is None or x.ndim == 4:
        return x
    if x.ndim > 4 or x.ndim < 2:
        raise ValueError(f"attention: {name} must broadcast to (B, H, Lq, Lk), got {x.shape}")
    return x.reshape((1,) * (4 - x.ndim) + x.shape)


def _combined_mask(mask, q_seg, kv_seg):
    """Boolean (B|1, H|1, Lq, Lk) mask from ``mask`` and segment ids, or None."""
    if q_seg is not None:
        seg = (q_seg[:, :, None] == kv_seg[:, None, :])[:, None]
        mask = seg if mask is None else jnp.logical_and(mask, seg)
    return mask


def _jax_nn(q, k, v, bias, mask, causal, scale, implementation):
    if accumulation_dtype(q.dtype) == jnp.float64:
        # jax.nn's softmax is float32 for every input dtype: compute float64 exactly instead.
        return attention_reference(q, k, v, causal=causal, scale=scale, bias=bias, mask=mask)
    out = jax.nn.dot_product_attention(
        q,
        k,
        v,
        bias=bias,
        mask=mask,
        scale=scale,
        is_causal=causal,
        implementation=implementation,
    )
    if mask is not None:
        # jax.nn gives a row that sees no key the mean of V; the kernels give 0. Agree on 0.
        visible = jnp.broadcast_to(mask, mask.shape[:-1] + (k.shape[1],))
        if causal:
            lq, lk = q.shape[1], k.shape[1]
            visible = jnp.logical_and(visible, jnp.tril(jnp.ones((lq, lk), bool))[None, None])
        any_visible = jnp.any(visible, axis=-1)  # (B|1, H|1, Lq)
        any_visible = jnp.transpose(any_visible, (0, 2, 1))[..., None]  # (B|1, Lq, H|1, 1)
        out = jnp.where(any_visible, out, jnp.zeros((), out.dtype))
    return out


def dot_product_attention(
    q: Float[Array, "b lq h d"],
    k: Float[Array, "b lk hkv d"],
    v: Float[Array, "b lk hkv d"],
    *,
    bias: Float[Array, ...] | None = None,
    mask: Bool[Array, ...] | None = None,
    causal: bool = False,
    scale: float | None = None,
    impl: str = "auto",
    segment_ids: SegmentIds | None = None,
    key_padding_mask: Bool[Array, "b lk"] | None = None,
) -> Float[Array, "b lq h d"]:
    """Scaled dot-product attention, (B, Lq, H, D) x (B, Lk, Hkv, D) -> (B, Lq, H, D).

    Args:
      q, k, v: queries, keys and values (H % Hkv == 0).
      bias: additive logits bias broadcastable to (B, H, Lq, Lk) (xla, cudnn, mosaic, pallas).
      mask: boolean, True where attention is allowed, broadcastable to (B, H, Lq, Lk)
        (xla/cudnn only; prefer ``segment_ids``/``key_padding_mask``, which every impl takes).
      causal: mask keys after each query (top-left aligned).
      scale: logits scale; defaults to 1/sqrt(head_dim).
      impl: one of ``IMPLS``; see the module docstring.
      segment_ids: (B, L) int ids (self-attention) or a (q_ids (B, Lq), kv_ids (B, Lk)) pair;
        a query sees only keys with its id (packed sequences). Ids must be >= 0 (checked when
        concrete).
      key_padding_mask: (B, Lk) booleans, True for real keys.

    Raises:
      ValueError: an unknown impl, or q, k, v, a mask or segment ids of inconsistent shapes
        (the message names the argument and both shapes), or negative concrete segment ids.

    Returns:
      (B, Lq, H, D) in q's dtype.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; choose one of {IMPLS}")
    check_shapes(q, k, v)
    bias, mask = _as_4d(bias, "bias"), _as_4d(mask, "mask")
    _check_padding_mask(key_padding_mask, k)
    q_ids, kv_ids = _split_segments(segment_ids, q, k)
    _reject_negative_ids("segment_ids", q_ids)
    if kv_ids is not q_ids:
        _reject_negative_ids("segment_ids", kv_ids)
    q_seg, kv_seg = segments_from_padding(key_padding_mask, q_ids, kv_ids, q_len=q.shape[1])
    on_gpu = jax.default_backend() == "gpu"
    if impl == "auto":
        order = ("cudnn", "mosaic", "pallas") if on_gpu else ()
    else:
        order = () if impl == "xla" else (impl,)
    # What runs when the call is lowered for CUDA (whatever the host: an export for CUDA
    # from a CPU machine gets the kernel), and what runs on every other platform.
    on_cuda = "xla"
    for cand in order:
        reason = _reason(cand, q, k, v, bias, mask)
        if reason is None and cand == "mosaic" and impl == "auto":
            reason = _mosaic_device_reason()
        if reason is None:
            on_cuda = cand
            break
        level = logging.INFO if impl == "auto" else logging.WARNING
        log_once(_logger, f"attention impl={cand} unavailable: {reason}; falling back", level)
    elsewhere = on_cuda if on_cuda in _INTERPRETED else "xla"  # interpreted off the GPU
    if on_cuda in ("cudnn", "mosaic", "triton") and not on_gpu:
        log_once(
            _logger,
            f"attention impl={on_cuda} runs where the call is lowered for CUDA; "
            f"xla on {jax.default_backend()!r}",
            logging.INFO,
        )

    def run(chosen: str, backend: str | None):
        def attend(q, k, v):
            if chosen in ("pallas", "mosaic", "triton"):
                from kernels.flash_attention.ops import flash_attention

                return flash_attention(
                    q,
                    k,
                    v,
                    causal=causal,
                    scale=scale,
                    q_segment_ids=q_seg,
                    kv_segment_ids=kv_seg,
                    impl=chosen,
                    backend=backend,
                    bias=_kernel_bias(bias, q, k),
                )
            full_mask = _combined_mask(mask, q_seg, kv_seg)
            return _jax_nn(q, k, v, bias, full_mask, causal, scale, chosen).astype(q.dtype)

        return attend

    if on_cuda == "xla":
        out = run("xla", None)(q, k, v)
    else:
        out = jax.lax.platform_dependent(
            q, k, v, cuda=run(on_cuda, "gpu"), default=run(elsewhere, "interpret")
        )
    return out.astype(q.dtype)


def axial_attention(
    q: Float[Array, "b *axes h d"],
    k: Float[Array, "b *axes hkv d"],
    v: Float[Array, "b *axes hkv d"],
    *,
    axis: int,
    bias: Float[Array, ...] | None = None,
    causal: bool = False,
    impl: str = "auto",
) -> Float[Array, "b *axes h d"]:
    """Attention along one token axis of (B, *axes, heads, D) arrays, e.g. (B, T, H, W, h, D).

    Every other token axis is folded into the batch, so the same kernels serve time, height and
    width attention of the surrogate (axial attention, Ho et al. 2019, arXiv:1912.12180).

    Args:
      q, k, v: (B, *axes, heads, D) and (B, *axes, kv_heads, D), same token axes.
      axis: the attended token axis, an index into q's shape in ``[1, q.ndim - 3]`` (negative
        values count from the end as usual, so -3 is the last token axis).
      bias: additive logits bias broadcastable to (B * prod(other axes), heads, L, L), e.g.
        (heads, L, L) for a relative-position bias.
      causal: causal along ``axis`` (e.g. time).
      impl: as in :func:`dot_product_attention`.

    Returns:
      Same shape and dtype as q.
    """
    if q.ndim < 4:
        raise ValueError(f"axial_attention: q must be (B, *axes, heads, D), got {q.shape}")
    if k.shape[:-2] != q.shape[:-2] or v.shape != k.shape:
        raise ValueError(
            f"axial_attention: token axes of q{q.shape}, k{k.shape}, v{v.shape} must agree"
        )
    ax = axis + q.ndim if axis < 0 else axis
    if not 1 <= ax <= q.ndim - 3:
        raise ValueError(
            f"axial_attention: axis={axis} is not a token axis of q{q.shape} "
            f"(valid: 1..{q.ndim - 3} or {-(q.ndim - 2)}..-3)"
        )

    def fold(x):
        x = jnp.moveaxis(x, ax, -3)  # (B, *others, L, heads, D)
        return x.reshape((-1,) + x.shape[-3:]), x.shape

    (qf, moved_shape), (kf, _), (vf, _) = fold(q), fold(k), fold(v)
    out = dot_product_attention(qf, kf, vf, bias=bias, causal=causal, impl=impl)
    return jnp.moveaxis(out.reshape(moved_shape), -3, ax)
