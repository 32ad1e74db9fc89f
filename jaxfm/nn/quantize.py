"""int8 weight-only quantization (per-output-channel absmax) of a trained parameter tree.

Design note. Post-training, weight-only: every matrix kernel W of shape (..., d_in, d_out)
(``nnx.Linear``/``nnx.Conv`` kernels, MoE expert weights (E, d, f)) is stored as

    s = max_{d_in} |W| / 127          (float32, shape (..., 1, d_out); s = 1 for an all-zero
                                       channel so nothing divides by zero)
    q = clip(round(W / s), -127, 127) (int8, the symmetric range: -128 is never used)

and dequantized to ``q * s`` in the original dtype before inference, so the quantized tree
plugs back into ``nnx.merge`` / ``nnx.update`` unchanged. The reduction runs over the
contraction axis -2 only, so leading axes (experts, conv taps) each get their own scales.
Rounding to nearest bounds the error of every element by s / 2. Biases, norm scales, routers
and the float32 state-space parameters (``A_log``, ``D``, ``dt`` bias) are vectors or are not
named as kernels, and are left untouched. Storage: 1 byte per element plus 4 bytes per output
channel, i.e. 4 d_in / (d_in + 4) times smaller than float32.

Activations stay in floating point (W8A16 / W8A32); the measured accuracy change of a model
comes from :func:`output_change`. Reference: the weight-only int8 scheme of MaxText / Qwix;
Jacob et al. 2018, arXiv 1712.05877.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int8

#: Leaf names quantized by default: Linear/Conv kernels and MoE expert weights. The MoE
#: router is left out on purpose (int8 noise in its logits would change which experts fire).
KERNEL_NAMES = ("kernel", "w_up", "w_gate", "w_down")

_QMAX = 127.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Int8Weight:
    """An int8 kernel with per-output-channel float32 scales; ``q * scale`` approximates it."""

    q: Int8[Array, "... d_in d_out"]
    """Quantized values in [-127, 127]."""
    scale: Float[Array, "... 1 d_out"]
    """Per-output-channel scale, max|W| / 127 over d_in (1 for an all-zero channel)."""
    dtype: str = dataclasses.field(metadata=dict(static=True), default="float32")
    """Name of the original kernel's dtype, restored by :func:`dequantize`."""

    @property
    def nbytes(self) -> int:
        """Bytes of storage (values plus scales)."""
        return int(self.q.nbytes + self.scale.nbytes)


def quantize_array(w: Float[Array, "... d_in d_out"]) -> Int8Weight:
    """Per-output-channel absmax int8 quantization of one kernel.

    Args:
      w: a floating array with at least 2 dimensions; axis -2 is the contraction axis.

    Returns:
      The :class:`Int8Weight` with ``|w - q * scale| <= scale / 2`` elementwise.
    """
    if w.ndim < 2 or not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(
            f"quantize_array needs a floating array with ndim >= 2, got {w.dtype} {w.shape}"
        )
    w32 = w.astype(jnp.float32)
    amax = jnp.max(jnp.abs(w32), axis=-2, keepdims=True)
    scale = jnp.where(amax > 0, amax / _QMAX, 1.0).astype(jnp.float32)
    q = jnp.clip(jnp.round(w32 / scale), -_QMAX, _QMAX).astype(jnp.int8)
    return Int8Weight(q=q, scale=scale, dtype=jnp.dtype(w.dtype).name)


def dequantize_array(w: Int8Weight) -> jax.Array:
    """``q * scale`` in the original dtype."""
    return (w.q.astype(jnp.float32) * w.scale).astype(w.dtype)


def _leaf_name(path) -> Any:
    """The innermost dict key or attribute name of a leaf path (skipping ``.value``)."""
    for entry in reversed(path):
        if isinstance(entry, jax.tree_util.DictKey):
            return entry.key
        if isinstance(entry, jax.tree_util.GetAttrKey) and entry.name != "value":
            return entry.name
    return None


def _is_q(x) -> bool:
    return isinstance(x, Int8Weight)


def quantize(tree: Any, *, names: tuple[str, ...] = KERNEL_NAMES) -> Any:
    """Quantize every matrix kernel of a parameter tree to :class:`Int8Weight`.

    Args:
      tree: a pure dict of parameters (``nnx.to_pure_dict``) or an ``nnx.State``.
      names: leaf names to quantize; a leaf is quantized when its name is in ``names``, it is
        floating point and it has at least 2 dimensions. Everything else is kept as is.

    Returns:
      The same structure with the selected leaves replaced by :class:`Int8Weight`.
    """

    def one(path, x):
        if (
            _leaf_name(path) in names
            and hasattr(x, "ndim")
            and x.ndim >= 2
            and jnp.issubdtype(x.dtype, jnp.floating)
        ):
            return quantize_array(x)
        return x

    return jax.tree_util.tree_map_with_path(one, tree)


def dequantize(qtree: Any) -> Any:
    """Undo :func:`quantize`: the same tree structure and dtypes as the original tree.

    The result of an ``nnx.State`` input is an ``nnx.State`` that ``nnx.merge(graphdef, .)``
    or ``nnx.update(model, .)`` accepts.
    """
    return jax.tree.map(lambda x: dequantize_array(x) if _is_q(x) else x, qtree, is_leaf=_is_q)


def tree_nbytes(tree: Any, *, quantized_only: bool = False) -> int:
    """Bytes held by a (possibly quantized) tree.

    Args:
      tree: a parameter tree, quantized or not.
      quantized_only: count only :class:`Int8Weight` leaves (to compare the kernels alone).
    """
    total = 0
    for leaf in jax.tree.leaves(tree, is_leaf=_is_q):
        if _is_q(leaf):
            total += leaf.nbytes
        elif not quantized_only and hasattr(leaf, "nbytes"):
            total += int(leaf.nbytes)
    return total


def kernel_nbytes(tree: Any, qtree: Any) -> tuple[int, int]:
    """(float bytes, int8 bytes) of the kernels that ``qtree`` quantized out of ``tree``."""
    flags = jax.tree.map(_is_q, qtree, is_leaf=_is_q)
    before = sum(int(x.nbytes) for x, f in zip(jax.tree.leaves(tree), jax.tree.leaves(flags)) if f)
    return before, tree_nbytes(qtree, quantized_only=True)


def output_change(y_ref: jax.Array, y_q: jax.Array) -> dict[str, float]:
    """How far the quantized model's outputs moved from the float model's.

    Returns:
      ``max_abs`` and ``mean_abs`` differences and ``rel_l2`` = ||y_q - y_ref|| / ||y_ref||,
      computed in float64 on the host.
    """
    a = np.asarray(y_ref, np.float64)
    b = np.asarray(y_q, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output_change: shapes differ, {a.shape} vs {b.shape}")
    d = np.abs(b - a)
    return {
        "max_abs": float(d.max()),
        "mean_abs": float(d.mean()),
        "rel_l2": float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-30)),
    }


def quantization_report(
    model, apply: Callable[[Any], jax.Array], names: tuple[str, ...] = KERNEL_NAMES
) -> dict[str, float]:
    """Quantize an NNX model's parameters and measure what changes.

    Args:
      model: an ``nnx.Module`` (left unchanged).
      apply: ``apply(module) -> outputs`` on the evaluation batch, e.g.
        ``lambda m: m(batch["x"])``.
      names: leaf names to quantize (see :func:`quantize`).

    Returns:
      :func:`output_change` of the outputs plus ``kernel_bytes_float``, ``kernel_bytes_int8``
      and their ratio ``kernel_compression``.
    """
    from flax import nnx  # local: keeps this module importable for pure-dict use

    graphdef, state = nnx.split(model)
    qstate = quantize(state, names=names)
    y_ref = apply(model)
    y_q = apply(nnx.merge(graphdef, dequantize(qstate)))
    before, after = kernel_nbytes(state, qstate)
    out = output_change(y_ref, y_q)
    out.update(
        kernel_bytes_float=before,
        kernel_bytes_int8=after,
        kernel_compression=before / max(after, 1),
    )
    return out
