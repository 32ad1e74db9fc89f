"""2-D shallow water, radial dam break (the PDEBench ``2D_rdb`` setting).

    h_t + (hu)_x + (hv)_y = 0
    (hu)_t + (hu² + g h²/2)_x + (huv)_y = 0
    (hv)_t + (huv)_x + (hv² + g h²/2)_y = 0

Finite volume: MUSCL (minmod on the conservative variables) + Rusanov flux with wave speed
``|u| + sqrt(g h)``, SSP-RK2, transmissive (``open``, zero-gradient) boundaries; see
:mod:`jaxfm.data.sim.finite_volume` and Toro, *Shock-Capturing Methods for Free-Surface Shallow
Flows*, 2001. Mass is conserved exactly until a wave leaves the box; the radial initial state
stays mirror symmetric (tested).

Initial condition as in PDEBench (Takamoto et al. 2022): domain ``[-2.5, 2.5]²``, ``g = 1``,
still water, ``h = h_in`` inside a circle of radius ``r ~ U(radius_range)`` centred at
``(x0, y0) ~ U(center_range)²``, ``h = 1`` outside. Recorded: ``radius``, ``x0``, ``y0``.
Output fields ``h``, ``velocity_x``, ``velocity_y``: ``(n_traj, n_steps, n, n, 3)``.
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxfm.data.sim import finite_volume as fv
from jaxfm.data.sim.stepping import (
    cell_centres,
    rollout,
    sample_uniform,
    substeps_for,
)
from jaxfm.data.sim.system import System
from jaxfm.data.trajectories import TrajectorySet


@dataclasses.dataclass(frozen=True)
class ShallowWaterConfig:
    """Settings of the radial dam-break simulator."""

    resolution: int = 64
    """Cells per side."""
    n_steps: int = 33
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 1.0 / 32
    """Time between stored frames (PDEBench: 101 frames over t ∈ [0, 1])."""
    half_width: float = 2.5
    """The domain is [-half_width, half_width]²."""
    gravity: float = 1.0
    """Gravitational acceleration g."""
    h_in: float = 2.0
    """Water height inside the dam."""
    radius_range: tuple[float, float] = (0.3, 0.7)
    """Dam radius r ~ U(radius_range)."""
    center_range: tuple[float, float] = (0.0, 0.0)
    """Dam centre coordinates ~ U(center_range) each (PDEBench: fixed at 0)."""
    cfl: float = 0.4
    """Courant number."""
    limiter: str = "minmod"
    """Slope limiter: minmod, mc or none."""


SYSTEM = System(
    "shallow_water",
    fields=("h", "velocity_x", "velocity_y"),
    bc=("open", "open"),
    config=ShallowWaterConfig(),
    description="2-D shallow-water radial dam break, FV, open boundaries",
    mix_order=0,
)
SYSTEMS = (SYSTEM,)
"""This module's system (:mod:`jaxfm.data.sim.system`)."""


def rhs(q, dx, g, limiter: str = "minmod"):
    """``dq/dt`` for ``q = (h, hu, hv)`` of shape ``(3, nx, ny)`` with open boundaries."""

    def flux(w, axis):
        h, mx, my = w
        u, v = mx / h, my / h
        m = (mx, my)[axis]
        un = (u, v)[axis]
        p = 0.5 * g * h * h
        f = jnp.stack([m, mx * un + (p if axis == 0 else 0.0), my * un + (p if axis == 1 else 0.0)])
        return f, w

    def speed(w, axis):
        return jnp.abs(w[1 + axis] / w[0]) + jnp.sqrt(g * w[0])

    return fv.rusanov_divergence_2d(q, dx, "open", limiter, flux, speed, swap=(1, 2))


@partial(jax.jit, static_argnames=("n_frames", "limiter"))
def solve(h0, dx, dt, g, n_frames: int, substeps: int, limiter: str = "minmod"):
    """Evolve still water of height ``h0`` (``(nx, ny)``); returns ``(n_frames, nx, ny, 3)``."""
    q0 = jnp.stack([h0, jnp.zeros_like(h0), jnp.zeros_like(h0)])
    step = lambda q: fv.ssp_rk2(lambda s: rhs(s, dx, g, limiter), q, dt)
    observe = lambda q: jnp.stack([q[0], q[1] / q[0], q[2] / q[0]], -1)
    return rollout(step, q0, n_frames, substeps, observe)


def simulate(config: ShallowWaterConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random dam breaks (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n, a = config.resolution, config.half_width
    x = cell_centres(n, -a, a)
    radius = sample_uniform(rng, config.radius_range, n_traj)
    x0 = sample_uniform(rng, config.center_range, n_traj)
    y0 = sample_uniform(rng, config.center_range, n_traj)
    X, Y = np.meshgrid(x, x, indexing="ij")
    r = np.sqrt((X[None] - x0[:, None, None]) ** 2 + (Y[None] - y0[:, None, None]) ** 2)
    h0 = np.where(r < radius[:, None, None], config.h_in, 1.0)
    dx = 2 * a / n
    # Fastest wave of a dam break from rest: below 2 sqrt(g h_in) (the dry-bed front speed).
    smax = 2 * np.sqrt(config.gravity * config.h_in)
    sub, dt = substeps_for(config.frame_dt, config.cfl * dx / smax)
    run = jax.vmap(lambda h: solve(h, dx, dt, config.gravity, config.n_steps, sub, config.limiter))
    out = run(jnp.asarray(h0, jnp.float32))
    return SYSTEM.trajectories(
        out,
        config,
        coords=(x, x),
        params={"radius": radius, "x0": x0, "y0": y0},
        seed=seed,
        scheme="MUSCL-Rusanov-SSPRK2",
        substeps=sub,
    )
