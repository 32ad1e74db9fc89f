"""Shared field embedding over a global field vocabulary, and the hMLP patch stem / de-stem.

Design note (MPP, McCabe et al., arXiv 2310.02994, section 4.1). Every physical field of every
system (``swe/h``, ``cns/density``, ...) has a row in one global vocabulary of ``n_fields``
entries. A sample carries the ids of its C fields; the embedding gathers those C rows and
maps each grid point's C values to ``dim`` channels:

    y = sqrt(n_ref / C) * (x @ W[ids] + b)           (MPP ``SubsampledLinear``)

The factor sqrt(n_ref / C) keeps the output variance independent of how many fields are
present (an input with all n_ref fields needs no correction). ``n_ref`` is the vocabulary size
*at construction*: it is frozen so that appending rows for new systems (fine-tuning on unseen
physics, :meth:`FieldEmbedding.expand`) leaves every old field's output bit-for-bit unchanged.
(MPP recomputes the factor from the grown vocabulary, which shifts old outputs slightly.)
Ids < 0 mark padding channels: their values are ignored and they are not counted in C.
An id with no row (>= the vocabulary size) is an error, never a clamp onto the last row (which
would give two new fields one embedding): ids known when the layer is called raise
:class:`FieldVocabularyError`; under ``jit`` (traced ids) the gather fills such rows with NaN,
so the loss turns non-finite and the trainer stops instead of learning on aliased fields.

The hMLP stem (Touvron et al., "Three things...", ECCV 2022) patchifies hierarchically: three
non-overlapping strided convolutions (strides 4, 2, 2 = patch 16 in MPP), each followed by an
RMS instance norm, GELU between; no conv bias. The de-stem mirrors it with transposed
convolutions; its *last* kernel and bias are per vocabulary field and gathered by the sample's
ids, so each output channel is the field it stands for.

Shapes: FieldEmbedding (N, ..., C) -> (N, ..., dim); PatchStem (N, H, W, dim/4) ->
(N, H/p, W/p, dim); PatchDestem (N, H/p, W/p, dim) -> (N, H, W, C); ids (N, C) or (C,).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxfm.nn.instance_norm import RMSInstanceNorm
from jaxfm.nn.params import param


def _ids2d(ids: jax.Array, batch: int) -> jax.Array:
    ids = jnp.asarray(ids, jnp.int32)
    if ids.ndim == 1:
        ids = jnp.broadcast_to(ids[None], (batch, ids.shape[0]))
    if ids.ndim != 2 or ids.shape[0] != batch:
        raise ValueError(f"field ids must be (C,) or ({batch}, C), got shape {ids.shape}")
    return ids


class FieldVocabularyError(ValueError):
    """A field id beyond the model's field vocabulary (no embedding row for it)."""


def _check_vocabulary(ids: jax.Array, n_rows: int) -> None:
    """Raise when concrete ``ids`` name a row the vocabulary lacks (traced ids: see _rows)."""
    if isinstance(ids, jax.core.Tracer):
        return
    ids = np.asarray(ids)
    if ids.size and int(ids.max()) >= n_rows:
        bad = sorted({int(i) for i in ids.reshape(-1) if i >= n_rows})
        raise FieldVocabularyError(
            f"field id(s) {bad} have no row in the model's field vocabulary of {n_rows} "
            f"(ids 0..{n_rows - 1}); grow it with model.avit.n_fields, or AViT.expand when "
            f"fine-tuning a checkpoint"
        )


def _rows(table: jax.Array, ids: jax.Array, axis: int) -> jax.Array:
    """``table`` entries at ``ids`` along ``axis``; padding ids (< 0) read row 0 (masked by the
    caller), ids past the end read NaN rather than being clamped onto the last row."""
    return jnp.take(table, jnp.maximum(ids, 0), axis=axis, mode="fill", fill_value=jnp.nan)


def patchify_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Conv with stride = kernel size, no padding: (N,H,W,Ci) x (k,k,Ci,Co) -> (N,H/k,W/k,Co)."""
    n, h, w, c = x.shape
    k = kernel.shape[0]
    if h % k or w % k:
        raise ValueError(f"spatial size {(h, w)} is not divisible by the stem stride {k}")
    xp = x.reshape(n, h // k, k, w // k, k, c)
    return jnp.einsum("nhawbc,abco->nhwo", xp, kernel.astype(x.dtype))


def unpatchify_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Transposed conv with stride = kernel size: (N,h,w,Ci) x (k,k,Ci,Co) -> (N,hk,wk,Co)."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    y = jnp.einsum("nhwc,abco->nhawbo", x, kernel.astype(x.dtype))
    return y.reshape(n, h * k, w * k, kernel.shape[-1])


class FieldEmbedding(nnx.Module):
    """Pointwise projection of the present fields, columns gathered from a global vocabulary."""

    def __init__(self, n_fields: int, dim: int, *, rngs: nnx.Rngs):
        """Args: n_fields: vocabulary size; dim: output channels; rngs: initialisation."""
        self.n_ref = n_fields
        self.kernel = param(self._init_rows(rngs, n_fields, dim), (None, "embed"))
        self.bias = param(jnp.zeros((dim,), jnp.float32), ("embed",))

    def _init_rows(self, rngs: nnx.Rngs, rows: int, dim: int) -> jax.Array:
        # fan-in is the reference vocabulary: with all fields present this is lecun-normal
        return jax.random.normal(rngs.params(), (rows, dim), jnp.float32) / math.sqrt(self.n_ref)

    @property
    def n_fields(self) -> int:
        """Current vocabulary size (grows with :meth:`expand`)."""
        return self.kernel.shape[0]

    def expand(self, extra: int, *, rngs: nnx.Rngs) -> None:
        """Appends ``extra`` freshly initialised rows; existing rows and the scale are kept."""
        new = self._init_rows(rngs, extra, self.kernel.shape[1])
        self.kernel = param(jnp.concatenate([self.kernel[...], new], axis=0), (None, "embed"))

    def __call__(self, x: Float[Array, "n *s c"], field_ids: jax.Array):
        """Embeds ``x`` whose last axis holds the fields named by ``field_ids``."""
        ids = _ids2d(field_ids, x.shape[0])
        if ids.shape[1] != x.shape[-1]:
            raise ValueError(f"{x.shape[-1]} fields in x but {ids.shape[1]} field ids")
        _check_vocabulary(ids, self.n_fields)
        valid = ids >= 0
        w = jnp.where(valid[..., None], _rows(self.kernel[...], ids, 0), 0.0)  # (N, C, dim)
        count = jnp.maximum(jnp.sum(valid, axis=1), 1).astype(jnp.float32)
        scale = jnp.sqrt(self.n_ref / count).reshape((-1,) + (1,) * (x.ndim - 1))
        bias = self.bias[...].astype(x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
        y = jnp.einsum("n...c,ncd->n...d", x, w.astype(x.dtype)) + bias
        return (scale * y).astype(x.dtype)


def _conv_init(rngs: nnx.Rngs, k: int, cin: int, cout: int, axes) -> nnx.Param:
    init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3)
    return param(init(rngs.params(), (k, k, cin, cout), jnp.float32), axes)


class PatchStem(nnx.Module):
    """hMLP stem: strided convs ``strides`` (product = patch), RMS instance norms, GELU."""

    def __init__(self, dim: int, *, strides: tuple[int, ...] = (4, 2, 2), rngs: nnx.Rngs):
        """Args: dim: token width (input has dim // 4 channels); strides: per stage."""
        q = dim // 4
        chans = [q] * len(strides) + [dim]
        self.kernels = nnx.List(
            [
                _conv_init(
                    rngs,
                    s,
                    chans[i],
                    chans[i + 1],
                    (None, None, None, "embed" if i == len(strides) - 1 else None),
                )
                for i, s in enumerate(strides)
            ]
        )
        self.norms = nnx.List([RMSInstanceNorm(c) for c in chans[1:]])

    def __call__(self, x: Float[Array, "n h w q"]) -> jax.Array:
        """(N, H, W, dim/4) -> (N, H/patch, W/patch, dim)."""
        for i, (kernel, norm) in enumerate(zip(self.kernels, self.norms)):
            x = norm(patchify_conv(x, kernel[...]))
            if i < len(self.kernels) - 1:
                x = jax.nn.gelu(x, approximate=False)
        return x


class PatchDestem(nnx.Module):
    """hMLP de-stem: transposed convs, the last one's kernel/bias gathered by field ids."""

    def __init__(
        self,
        dim: int,
        n_fields: int,
        *,
        strides: tuple[int, ...] = (4, 2, 2),
        zero_init_output: bool = False,
        rngs: nnx.Rngs,
    ):
        """Args:
        dim: token width.
        n_fields: vocabulary size (output kernel columns).
        strides: the stem's strides; applied here in reverse order.
        zero_init_output: start the per-field output at zero (delta prediction: the
          untrained model then predicts "no change", i.e. persistence).
        rngs: initialisation.
        """
        q = dim // 4
        rev = tuple(reversed(strides))
        chans = [dim] + [q] * len(rev)
        self.kernels = nnx.List(
            [
                _conv_init(
                    rngs, s, chans[i], chans[i + 1], ("embed" if i == 0 else None, None, None, None)
                )
                for i, s in enumerate(rev[:-1])
            ]
        )
        self.norms = nnx.List([RMSInstanceNorm(c) for c in chans[1:-1]])
        k, c_in = rev[-1], chans[-2]  # a one-stage de-stem decodes the tokens directly
        if zero_init_output:
            out = jnp.zeros((k, k, c_in, n_fields), jnp.float32)
        else:
            out = _conv_init(rngs, k, c_in, n_fields, None)[...]
        self.out_kernel = param(out, (None, None, None, None))
        self.out_bias = param(jnp.zeros((n_fields,), jnp.float32), (None,))

    def expand(self, extra: int, *, rngs: nnx.Rngs, zero_init: bool = False) -> None:
        """Appends ``extra`` output fields (new kernel columns, zero bias); old ones kept.

        ``zero_init`` starts the new columns at zero (delta models: persistence for new fields).
        """
        k, _, q, _ = self.out_kernel.shape
        new = _conv_init(rngs, k, q, extra, None)[...]
        if zero_init:
            new = jnp.zeros_like(new)
        self.out_kernel = param(
            jnp.concatenate([self.out_kernel[...], new], axis=-1), (None, None, None, None)
        )
        self.out_bias = param(jnp.concatenate([self.out_bias[...], jnp.zeros((extra,))]), (None,))

    def __call__(self, x: Float[Array, "n h w d"], field_ids: jax.Array) -> jax.Array:
        """(N, h, w, dim) -> (N, h*patch, w*patch, C) for the fields named by ``field_ids``."""
        for kernel, norm in zip(self.kernels, self.norms):
            x = jax.nn.gelu(norm(unpatchify_conv(x, kernel[...])), approximate=False)
        ids = _ids2d(field_ids, x.shape[0])
        _check_vocabulary(ids, self.out_bias.shape[0])
        kern = jnp.moveaxis(_rows(self.out_kernel[...], ids, 3), 3, 0)  # (N, k, k, q, C)
        n, h, w, _ = x.shape
        k = kern.shape[1]
        y = jnp.einsum("nhwc,nabco->nhawbo", x, kern.astype(x.dtype))
        y = y.reshape(n, h * k, w * k, ids.shape[1])
        bias = _rows(self.out_bias[...], ids, 0).astype(x.dtype)  # (N, C)
        return y + bias[:, None, None, :]
