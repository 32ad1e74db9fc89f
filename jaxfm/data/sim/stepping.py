"""Time stepping and grids shared by the simulators.

Every simulator advances a fixed ``dt`` (chosen on the host from a stability bound, the same for
every trajectory of a batch so that ``vmap`` runs in lock step) and stores a frame every
``substeps`` steps: ``n_frames`` frames including the initial one.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def rollout(step: Callable, state, n_frames: int, substeps: int, observe: Callable):
    """Advance ``state`` and stack ``observe(state)`` at ``n_frames`` frame times.

    Args:
        step: ``state -> state`` for one time step of length ``dt``.
        state: initial state (a pytree).
        n_frames: number of stored frames, the initial one included.
        substeps: time steps between stored frames.
        observe: ``state -> frame`` (any pytree of arrays).

    Returns:
        The frames stacked on a new leading axis of length ``n_frames``.
    """

    def frame(s, _):
        s = jax.lax.fori_loop(0, substeps, lambda _, x: step(x), s)
        return s, observe(s)

    _, frames = jax.lax.scan(frame, state, None, length=n_frames - 1)
    first = observe(state)
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], 0), first, frames)


def substeps_for(frame_dt: float, dt_max: float) -> tuple[int, float]:
    """Smallest number of equal steps of at most ``dt_max`` that cover ``frame_dt``.

    Returns:
        ``(substeps, dt)`` with ``substeps * dt == frame_dt``.
    """
    if not (dt_max > 0 and math.isfinite(dt_max)):
        raise ValueError(f"stable time step must be positive and finite, got {dt_max}")
    n = max(1, math.ceil(frame_dt / dt_max - 1e-9))
    return n, frame_dt / n


def cell_centres(n: int, lo: float, hi: float) -> np.ndarray:
    """Centres of ``n`` equal cells covering ``[lo, hi]``, float32."""
    dx = (hi - lo) / n
    return (lo + dx * (np.arange(n) + 0.5)).astype(np.float32)


def wavenumbers(n: int, length: float) -> np.ndarray:
    """Angular FFT wavenumbers ``2π k / length`` for ``n`` points, float32."""
    return (2 * np.pi * np.fft.fftfreq(n, d=length / n)).astype(np.float32)


def sample_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """``n`` draws from ``U(bounds)`` (a degenerate range gives the constant)."""
    lo, hi = bounds
    return rng.uniform(lo, hi, size=n) if hi > lo else np.full(n, lo, np.float64)


def config_record(config) -> dict:
    """A config dataclass as JSON-friendly values (tuples become lists), for file metadata."""
    import dataclasses

    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }
