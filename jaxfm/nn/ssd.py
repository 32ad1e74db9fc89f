"""Mamba-2: the state-space duality (SSD) layer of Dao & Gu 2024 (arXiv 2405.21060).

Per head h (state P x N, scalar decay a_h = -exp(A_log_h) < 0):

    H_t = exp(dt_t a) H_{t-1} + (dt_t x_t) B_t^T,      y_t = H_t C_t + D x_t

Equivalently Y = M X with M_ts = (C_t . B_s) exp(sum_{k=s+1..t} dt_k a) for t >= s. The
chunked algorithm (``ssd_minimal_discrete`` in state-spaces/mamba, §6 of the paper) splits
the sequence into chunks of Q tokens and evaluates

1. the intra-chunk quadratic term with the decay matrix exp(segsum(dt a)) (matmuls);
2. each chunk's end state from its inputs, decayed to the chunk end;
3. a recurrence over chunk states (a ``lax.scan`` over L/Q chunks: linear in L);
4. the contribution of the incoming state to each output, decayed from the chunk start.

:func:`segsum` is the numerically stable form (mask, then cumsum along the new axis): the
difference-of-cumsums form cancels catastrophically once the cumulative decay is large
(measured fp32 error of exp(segsum) vs fp64 at Q 256, dt·a up to 16: 2.6e-8 stable,
9.3e-5 difference form). Everything inside is float32, or float64 when an input is float64
(with ``jax_enable_x64``: a float64 request is not rounded to float32). An empty sequence
(L = 0) returns an empty y and the initial state.

Shapes: x (B, L, H, P); dt (B, L, H) positive; A (H,) negative; B, C (B, L, G, N) with G
groups shared by H/G consecutive heads; state (B, H, P, N).

The :class:`Mamba2` mixer (``modules/mamba2.py``): ``in_proj`` to [z, x, B, C, dt], causal
depthwise conv + SiLU over [x, B, C], per-head dt bias (Mamba-1 init), A_log = log U(1, 16),
D = 1, output ``RMSNorm(y * silu(z))`` then ``out_proj``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

from jaxfm.nn.mamba import (
    SSMParam,
    causal_depthwise_conv,
    dt_bias_init,
    scaled_out_proj,
    token_mask,
)
from jaxfm.nn.mlp import dense
from jaxfm.nn.norms import RMSNorm
from jaxfm.nn.params import param
from jaxfm.nn.scan import compute_dtype


def segsum(a: Float[Array, "... t"]) -> Float[Array, "... t t"]:
    """out[..., i, j] = sum_{k=j+1..i} a[..., k] for i >= j, -inf above the diagonal.

    Stable: sums only the terms inside each segment (no difference of two long cumsums).
    """
    t = a.shape[-1]
    x = jnp.broadcast_to(a[..., :, None], a.shape + (t,))  # x[..., i, j] = a_i
    strict = jnp.tril(jnp.ones((t, t), bool), -1)
    x = jnp.where(strict, x, jnp.zeros_like(x))
    s = jnp.cumsum(x, axis=-2)
    return jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)


def ssd(
    x: Float[Array, "b l h p"],
    dt: Float[Array, "b l h"],
    A: Float[Array, " h"],
    B: Float[Array, "b l g n"],
    C: Float[Array, "b l g n"],
    D: Float[Array, " h"] | None = None,
    *,
    chunk: int = 64,
    h0: Float[Array, "b h p n"] | None = None,
) -> tuple[Float[Array, "b l h p"], Float[Array, "b h p n"]]:
    """Chunked SSD; returns (y in the dtype of x, last state in float32).

    Args:
      x: inputs per head.
      dt: positive step sizes (softplus applied).
      A: per-head decay rates, negative.
      B, C: input/output projections per group.
      D: per-head skip (None: none).
      chunk: chunk length Q >= 1; L need not be a multiple (padded with dt = 0).
      h0: initial state (default zeros).

    Raises:
      ValueError: ``chunk < 1``, no groups, or shapes that do not match (named).
    """
    if chunk < 1:
        raise ValueError(f"ssd: chunk must be >= 1, got {chunk}")
    if x.ndim != 4 or B.ndim != 4:
        raise ValueError(
            f"ssd: x must be (b, l, h, p) and B (b, l, g, n), got {x.shape}, {B.shape}"
        )
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    if g < 1:
        raise ValueError(f"ssd: B {B.shape} and C {C.shape} need at least one group")
    if dt.shape != (b, l, h) or A.shape != (h,):
        raise ValueError(f"ssd: dt {dt.shape} / A {A.shape} do not match x {x.shape}")
    if B.shape != (b, l, g, n) or C.shape != (b, l, g, n) or h % g:
        raise ValueError(
            f"ssd: B {B.shape}, C {C.shape} must be (b, l, groups, n) with "
            f"heads {h} a multiple of groups"
        )
    acc = compute_dtype(x, dt, A, B, C)
    xf, dtf, Af, Bf, Cf = (jnp.asarray(t, acc) for t in (x, dt, A, B, C))
    if h0 is not None and h0.shape != (b, h, p, n):
        raise ValueError(f"ssd: h0 {h0.shape} must be (b, h, p, n) = {(b, h, p, n)}")
    init = jnp.zeros((b, h, p, n), acc) if h0 is None else jnp.asarray(h0, acc)
    if l == 0:  # nothing to scan: no outputs, the state is the initial one
        return jnp.zeros(x.shape, x.dtype), init
    q = min(chunk, l)
    pad = (-l) % q
    if pad:  # dt = 0: no decay and no input, the state passes through unchanged
        pw = ((0, 0), (0, pad), (0, 0))
        xf, Bf, Cf = (jnp.pad(t, pw + ((0, 0),)) for t in (xf, Bf, Cf))
        dtf = jnp.pad(dtf, pw)
    c = (l + pad) // q
    Bf, Cf = (jnp.repeat(t, h // g, axis=2) for t in (Bf, Cf))  # groups -> heads
    xs = (xf * dtf[..., None]).reshape(b, c, q, h, p)  # discretised input dt·x
    Bs, Cs = (t.reshape(b, c, q, h, n) for t in (Bf, Cf))
    a = jnp.moveaxis((dtf * Af[None, None]).reshape(b, c, q, h), -1, 1)  # (b, h, c, q)

    seg = segsum(a)  # (b, h, c, q, q); seg[..., i, j] = log decay from j to i
    decay = jnp.exp(seg)
    # 1. intra-chunk (diagonal blocks)
    y_diag = jnp.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cs, Bs, decay, xs)
    # 2. chunk end states; decay from token s to the chunk end = row q-1 of the segsum
    to_end = decay[..., -1, :]  # (b, h, c, q)
    states = jnp.einsum("bclhn,bhcl,bclhp->bchpn", Bs, to_end, xs)
    # 3. recurrence over chunks
    chunk_decay = jnp.exp(jnp.sum(a, axis=-1))  # (b, h, c)

    def step(carry, inp):
        st, dec = inp  # (b, h, p, n), (b, h)
        return dec[..., None, None] * carry + st, carry  # emit the state entering the chunk

    last, entering = jax.lax.scan(
        step, init, (jnp.moveaxis(states, 1, 0), jnp.moveaxis(chunk_decay, -1, 0))
    )
    entering = jnp.moveaxis(entering, 0, 1)  # (b, c, h, p, n)
    # 4. incoming state -> outputs, decayed from the chunk start to each token (inclusive)
    from_start = jnp.exp(jnp.cumsum(a, axis=-1))  # (b, h, c, q)
    y_off = jnp.einsum("bclhn,bchpn,bhcl->bclhp", Cs, entering, from_start)
    y = (y_diag + y_off).reshape(b, c * q, h, p)[:, :l]
    if D is not None:
        y = y + xf[:, :l] * D.astype(acc)[None, None, :, None]
    return y.astype(x.dtype), last


class Mamba2(nnx.Module):
    """Mamba-2 mixer, (B, L, dim) -> (B, L, dim), causal.

    Args:
      dim: model width d.
      d_state: state size N (reference default 128; 64 in ``Mamba2Simple``).
      d_conv: causal convolution width.
      expand: inner width factor E (inner width E·d = heads·headdim).
      headdim: P, channels per head.
      ngroups: G, groups of heads sharing B and C.
      chunk: SSD chunk length Q.
      dt_min, dt_max, dt_floor: range of the initial step sizes.
      n_layer, n_residual: depth and residual branches per layer (output-proj rescaling).
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        dim: int,
        *,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_floor: float = 1e-4,
        n_layer: int = 1,
        n_residual: int = 1,
        rngs: nnx.Rngs,
    ):
        if chunk < 1:
            raise ValueError(f"Mamba2: chunk must be >= 1, got {chunk}")
        inner = expand * dim
        if inner % headdim:
            raise ValueError(
                f"Mamba2: expand*dim = {inner} is not divisible by headdim = {headdim}"
            )
        heads = inner // headdim
        if heads % ngroups:
            raise ValueError(f"Mamba2: heads = {heads} is not divisible by ngroups = {ngroups}")
        self.inner, self.heads, self.headdim = inner, heads, headdim
        self.n_layer, self.n_residual = n_layer, n_residual
        self.ngroups, self.d_state, self.chunk = ngroups, d_state, chunk
        conv_dim = inner + 2 * ngroups * d_state
        self.in_proj = dense(dim, inner + conv_dim + heads, ("embed", "mlp"), rngs, use_bias=False)
        self.conv = causal_depthwise_conv(conv_dim, d_conv, True, rngs)
        self.dt_bias = param(
            dt_bias_init(rngs.params(), (heads,), dt_min, dt_max, dt_floor), (None,), kind=SSMParam
        )
        a = jax.random.uniform(rngs.params(), (heads,), jnp.float32, 1.0, 16.0)
        self.A_log = param(jnp.log(a), (None,), kind=SSMParam)
        self.D = param(jnp.ones((heads,), jnp.float32), (None,), kind=SSMParam)
        self.norm = RMSNorm(inner, eps=1e-5)
        self.out_proj = scaled_out_proj(inner, dim, n_residual * n_layer, rngs)

    def __call__(
        self,
        x: Float[Array, "b l d"],
        *,
        mask: Bool[Array, "b l"] | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b l d"]:
        """Applies the mixer; ``mask`` (B, L) marks real tokens (masked ones are skipped)."""
        del deterministic, rngs
        b, l, _ = x.shape
        mask = token_mask(mask, b, l)
        gn = self.ngroups * self.d_state
        z, xbc, dt = jnp.split(self.in_proj(x), [self.inner, 2 * self.inner + 2 * gn], axis=-1)
        if mask is not None:
            xbc = jnp.where(mask[..., None], xbc, jnp.zeros_like(xbc))
        xbc = jax.nn.silu(self.conv(xbc))
        u, bm, cm = jnp.split(xbc, [self.inner, self.inner + gn], axis=-1)
        f32 = jnp.float32
        dt = jax.nn.softplus(dt.astype(f32) + self.dt_bias[...].astype(f32)[None, None])
        if mask is not None:
            dt = jnp.where(mask[..., None], dt, jnp.zeros_like(dt))
        y, _ = ssd(
            u.reshape(b, l, self.heads, self.headdim),
            dt,
            -jnp.exp(self.A_log[...].astype(f32)),
            bm.reshape(b, l, self.ngroups, self.d_state),
            cm.reshape(b, l, self.ngroups, self.d_state),
            self.D[...].astype(f32),
            chunk=self.chunk,
        )
        y = y.reshape(b, l, self.inner)
        y = self.norm(y * jax.nn.silu(z))
        return self.out_proj(y).astype(x.dtype)
