"""Shared finite-volume machinery: MUSCL reconstruction, Rusanov flux, SSP-RK2.

State arrays are variables-first, ``(n_var, *spatial)``; ``axis`` counts spatial axes (0 = x).
A second-order Godunov-type update (van Leer's MUSCL, see LeVeque, *Finite Volume Methods for
Hyperbolic Problems*, 2002, ch. 6 and 9):

1. pad two ghost cells per side (``periodic``: wrap; ``open``: copy the edge cell, i.e. a
   zero-gradient transmissive boundary);
2. limited slopes ``s_j = limiter(q_j - q_{j-1}, q_{j+1} - q_j)`` (``minmod``, monotonised
   central ``mc``, or ``none`` = unlimited centred slope for smooth convergence checks);
3. face states ``q_L = q_j + s_j/2``, ``q_R = q_{j+1} - s_{j+1}/2``;
4. Rusanov (local Lax-Friedrichs) flux ``F = (f(q_L) + f(q_R))/2 - a/2 (q_R - q_L)``,
   ``a = max(|λ(q_L)|, |λ(q_R)|)``;
5. ``dq/dt = -(F_{j+1/2} - F_{j-1/2}) / dx`` summed over axes, advanced with the two-stage
   strong-stability-preserving Runge-Kutta scheme (Shu & Osher 1988).

The flux difference telescopes, so with periodic boundaries the totals of the conserved
variables change only by float32 round-off.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

LIMITERS = ("minmod", "mc", "none")
"""Slope limiters understood by :func:`muscl_faces`."""


def _minmod(a, b):
    return jnp.where(a * b > 0, jnp.sign(a) * jnp.minimum(jnp.abs(a), jnp.abs(b)), 0.0)


def limited_slope(dl, dr, limiter: str):
    """Slope from left/right differences ``dl``, ``dr`` with the named limiter."""
    if limiter == "minmod":
        return _minmod(dl, dr)
    if limiter == "mc":
        return _minmod(0.5 * (dl + dr), 2.0 * _minmod(dl, dr))
    if limiter == "none":
        return 0.5 * (dl + dr)
    raise ValueError(f"unknown limiter {limiter!r}; choose one of {LIMITERS}")


def pad_axis(q, axis: int, bc: str, width: int = 2):
    """Pad spatial ``axis`` of a ``(n_var, *spatial)`` array with ghost cells for ``bc``."""
    pads = [(0, 0)] * q.ndim
    pads[axis + 1] = (width, width)
    if bc == "periodic":
        return jnp.pad(q, pads, mode="wrap")
    if bc == "open":
        return jnp.pad(q, pads, mode="edge")
    raise ValueError(f"finite-volume boundary {bc!r} not supported (periodic or open)")


def muscl_faces(w, axis: int, bc: str, limiter: str):
    """Left and right face states at the ``n + 1`` faces of spatial ``axis``.

    Args:
        w: ``(n_var, *spatial)`` reconstructed variables (conservative or primitive).
        axis: spatial axis.
        bc: ``periodic`` or ``open``.
        limiter: one of :data:`LIMITERS`.

    Returns:
        ``(w_left, w_right)``, each with ``n + 1`` entries along ``axis``: faces -1/2 .. n-1/2.
    """
    ax = axis + 1
    p = pad_axis(w, axis, bc)
    n = p.shape[ax]

    def sl(a, b):
        return jnp.take(p, jnp.arange(a, n + b), axis=ax)

    # Cells -1 .. n (n + 2 of them) get slopes from their neighbours.
    centre = sl(1, -1)
    slope = limited_slope(centre - sl(0, -2), sl(2, 0) - centre, limiter)
    idx = jnp.arange(centre.shape[ax])
    left = jnp.take(centre + 0.5 * slope, idx[:-1], axis=ax)
    right = jnp.take(centre - 0.5 * slope, idx[1:], axis=ax)
    return left, right


def rusanov_divergence(
    w,
    axis: int,
    dx: float,
    bc: str,
    limiter: str,
    flux_fn: Callable,
    speed_fn: Callable,
):
    """``-(F_{j+1/2} - F_{j-1/2}) / dx`` along one axis with a Rusanov flux.

    Args:
        w: ``(n_var, *spatial)`` variables to reconstruct (e.g. primitive).
        axis: spatial axis.
        dx: cell width along ``axis``.
        bc: ``periodic`` or ``open``.
        limiter: one of :data:`LIMITERS`.
        flux_fn: ``flux_fn(w_face, axis) -> (F, U)``: the physical flux and the conservative
            state at a face, both ``(n_var, ...)``.
        speed_fn: ``speed_fn(w_face, axis) -> |λ|_max`` per face, ``(...)``.

    Returns:
        The flux-divergence contribution ``(n_var, *spatial)``.
    """
    wl, wr = muscl_faces(w, axis, bc, limiter)
    fl, ul = flux_fn(wl, axis)
    fr, ur = flux_fn(wr, axis)
    a = jnp.maximum(speed_fn(wl, axis), speed_fn(wr, axis))
    flux = 0.5 * (fl + fr) - 0.5 * a[None] * (ur - ul)
    ax = axis + 1
    m = flux.shape[ax]
    return (
        -(jnp.take(flux, jnp.arange(1, m), axis=ax) - jnp.take(flux, jnp.arange(0, m - 1), axis=ax))
        / dx
    )


def ssp_rk2(rhs: Callable, q, dt):
    """One step of the strong-stability-preserving RK2 (Heun) scheme for ``dq/dt = rhs(q)``.

    ``q1 = q + dt f(q)``, ``q2 = (q + q1 + dt f(q1)) / 2``, written as a two-pass loop
    ``q_s <- a_s q + (1 - a_s)(q_s + dt f(q_s))`` with ``a = (0, 1/2)`` so that ``rhs`` is traced
    once: XLA compile time of the finite-volume solvers roughly halves.
    """
    a = jnp.asarray([0.0, 0.5], q.dtype)

    def stage(i, qs):
        return a[i] * q + (1 - a[i]) * (qs + dt * rhs(qs))

    return jax.lax.fori_loop(0, 2, stage, q)
