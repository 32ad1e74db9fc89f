"""Selective scan (the S6 recurrence of Mamba-1), three ways.

Recurrence (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", arXiv 2312.00752, Alg. 2; ``selective_scan_ref`` in state-spaces/mamba), per batch
element b, channel d and state index n:

    h_t = exp(dt_t A) * h_{t-1} + dt_t B_t x_t        (ZOH for A, Euler for B)
    y_t = C_t . h_t + D x_t

Shapes (channels last, the JAX-friendly layout; the CUDA reference is channels first):
    x, dt: (batch, length, channels); dt > 0 is the step after softplus and bias
    A: (channels, d_state), real and negative; B, C: (batch, length, d_state); D: (channels,)
    h: (batch, channels, d_state)

Backends, all computing in float32 for bf16/fp16/fp32 inputs (the state is a long product
of decays; bf16 accumulators lose it) and in float64 when an input is float64 (with
``jax_enable_x64``; a float64 request is never silently rounded to float32):

* ``linear``: a sequential ``lax.scan`` over time; the reference. O(B·D·N) live state,
  L sequential steps (slow on GPU for tiny step bodies).
* ``assoc``: ``lax.associative_scan`` with the S5 operator (a1, b1) o (a2, b2) =
  (a2 a1, a2 b1 + b2) (Smith et al. 2023). log2(L) depth but materialises several
  (B, L, D, N) tensors: 2 GB each at B 8, L 4096, D 1024, N 16.
* ``chunked``: associative scan inside chunks of ``chunk`` steps, sequential carry of h
  between chunks, the chunk body rematerialised (``jax.checkpoint``) so the backward pass
  stores only the inputs and one (B, D, N) state per chunk. Live memory O(B·chunk·D·N),
  independent of L. This is the default.

A length that is not a multiple of the chunk is padded with dt = 0, x = 0, which leaves the
state unchanged (exp(0·A) = 1), so the returned last state is exact. An empty sequence
(L = 0) returns an empty y and the initial state.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

ScanMethod = Literal["linear", "assoc", "chunked"]
METHODS: tuple[str, ...] = ("linear", "assoc", "chunked")


def compute_dtype(*arrays: jax.Array) -> jnp.dtype:
    """float32, or float64 when any input is float64 (never below float32)."""
    return jnp.result_type(*(a.dtype for a in arrays), jnp.float32)


def _check(x, dt, A, B, C):
    if x.ndim != 3 or A.ndim != 2:
        raise ValueError(
            f"selective_scan: x must be (batch, length, channels) and A (channels, d_state), "
            f"got x {x.shape} and A {A.shape}"
        )
    b, l, d = x.shape
    n = A.shape[-1]
    if dt.shape != x.shape:
        raise ValueError(f"selective_scan: dt shape {dt.shape} != x shape {x.shape}")
    if A.shape != (d, n):
        raise ValueError(f"selective_scan: A shape {A.shape} != (channels, d_state) = {(d, n)}")
    for name, m in (("B", B), ("C", C)):
        if m.shape != (b, l, n):
            raise ValueError(f"selective_scan: {name} shape {m.shape} != {(b, l, n)}")


def _discretise(x, dt, A, B):
    """exp(dt A) and dt B x, both (b, l, d, n) in the compute dtype."""
    dA = jnp.exp(dt[..., None] * A[None, None])
    dBx = (dt * x)[..., None] * B[:, :, None, :]
    return dA, dBx


def _combine(e1, e2):
    a1, b1 = e1
    a2, b2 = e2
    return a2 * a1, a2 * b1 + b2


def _scan_linear(x, dt, A, B, C, h0):
    def step(h, inp):
        x_t, dt_t, b_t, c_t = inp  # (b, d), (b, d), (b, n), (b, n)
        h = jnp.exp(dt_t[..., None] * A[None]) * h + (dt_t * x_t)[..., None] * b_t[:, None, :]
        return h, jnp.einsum("bdn,bn->bd", h, c_t)

    inputs = tuple(jnp.moveaxis(t, 1, 0) for t in (x, dt, B, C))
    h, ys = jax.lax.scan(step, h0, inputs)
    return jnp.moveaxis(ys, 0, 1), h


def _scan_assoc(x, dt, A, B, C, h0):
    dA, dBx = _discretise(x, dt, A, B)
    # Fold the initial state into the first input: h_1 = a_1 h_0 + b_1.
    dBx = dBx.at[:, 0].add(dA[:, 0] * h0)
    _, h = jax.lax.associative_scan(_combine, (dA, dBx), axis=1)
    return jnp.einsum("bldn,bln->bld", h, C), h[:, -1]


def _scan_chunked(x, dt, A, B, C, h0, chunk):
    b, l, d = x.shape
    q = min(chunk, l)
    pad = (-l) % q
    if pad:  # dt = 0 keeps the state: exp(0) = 1 and dt·B·x = 0
        x, dt, B, C = (jnp.pad(t, ((0, 0), (0, pad), (0, 0))) for t in (x, dt, B, C))
    nc = (l + pad) // q

    def split(t):  # (b, nc*q, f) -> (nc, b, q, f)
        return jnp.moveaxis(t.reshape(b, nc, q, t.shape[-1]), 1, 0)

    @jax.checkpoint
    def body(h, inp):
        xc, dtc, bc, cc = inp
        y, h = _scan_assoc(xc, dtc, A, bc, cc, h)
        return h, y

    h, ys = jax.lax.scan(body, h0, tuple(split(t) for t in (x, dt, B, C)))
    y = jnp.moveaxis(ys, 0, 1).reshape(b, nc * q, d)[:, :l]
    return y, h


def selective_scan(
    x: Float[Array, "b l d"],
    dt: Float[Array, "b l d"],
    A: Float[Array, "d n"],
    B: Float[Array, "b l n"],
    C: Float[Array, "b l n"],
    D: Float[Array, " d"] | None = None,
    *,
    method: ScanMethod = "chunked",
    chunk: int = 64,
    h0: Float[Array, "b d n"] | None = None,
) -> tuple[Float[Array, "b l d"], Float[Array, "b d n"]]:
    """Runs the selective-scan recurrence; returns (y, last state).

    Args:
      x: input sequence.
      dt: positive step sizes (softplus already applied).
      A: state matrix diagonal, negative.
      B, C: input and output projections, varying along the sequence.
      D: skip connection (None: no skip).
      method: ``linear``, ``assoc`` or ``chunked`` (see the module docstring).
      chunk: chunk length of the chunked scan.
      h0: initial state (default zeros).

    Returns:
      y in the dtype of ``x``; the last state in float32 (float64 for float64 inputs).

    Raises:
      ValueError: an unknown method, ``chunk < 1``, or inconsistent shapes (named).
    """
    if method not in METHODS:
        raise ValueError(f"unknown scan method {method!r}; choose one of {METHODS}")
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk must be >= 1, got {chunk}")
    _check(x, dt, A, B, C)
    acc = compute_dtype(x, dt, A, B, C)
    xf, dtf, Af, Bf, Cf = (jnp.asarray(t, acc) for t in (x, dt, A, B, C))
    b, l, d = x.shape
    h0 = jnp.zeros((b, d, A.shape[-1]), acc) if h0 is None else jnp.asarray(h0, acc)
    if l == 0:  # nothing to scan: no outputs, the state is the initial one
        return jnp.zeros(x.shape, x.dtype), h0
    if method == "linear":
        y, h = _scan_linear(xf, dtf, Af, Bf, Cf, h0)
    elif method == "assoc":
        y, h = _scan_assoc(xf, dtf, Af, Bf, Cf, h0)
    else:
        y, h = _scan_chunked(xf, dtf, Af, Bf, Cf, h0, chunk)
    if D is not None:
        y = y + xf * D.astype(acc)[None, None]
    return y.astype(x.dtype), h
