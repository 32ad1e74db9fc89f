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
        valid = ids >= 0
        w = self.kernel[...][jnp.clip(ids, 0)] * valid[..., None]  # (N, C, dim)
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
        k = rev[-1]
        if zero_init_output:
            out = jnp.zeros((k, k, q, n_fields), jnp.float32)
        else:
            out = _conv_init(rngs, k, q, n_fields, None)[...]
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
        ids = jnp.clip(_ids2d(field_ids, x.shape[0]), 0)
        kern = jnp.moveaxis(self.out_kernel[...][..., ids], 3, 0)  # (N, k, k, q, C)
        n, h, w, _ = x.shape
        k = kern.shape[1]
        y = jnp.einsum("nhwc,nabco->nhawbo", x, kern.astype(x.dtype))
        y = y.reshape(n, h * k, w * k, ids.shape[1])
        bias = self.out_bias[...][ids].astype(x.dtype)  # (N, C)
        return y + bias[:, None, None, :]
