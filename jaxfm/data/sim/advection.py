"""1-D linear advection ``u_t + c u_x = 0`` on a periodic interval.

Second-order finite volume (MUSCL + Rusanov, which is exact upwinding for a linear flux) with
SSP-RK2, see :mod:`jaxfm.data.sim.finite_volume`. The exact solution is the initial condition
shifted by ``c t``, which the tests use for the error and the observed order of convergence.

Initial condition: ``u0(x) = Σ_{k=1..K} a_k sin(2π k x / L + φ_k)``, ``a_k ~ N(0, 1)/k``,
``φ_k ~ U(0, 2π)``; the speed ``c ~ U(speed_range)`` per trajectory (recorded as ``speed``).
Output field: ``u``, shape ``(n_traj, n_steps, resolution, 1)``.
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
class AdvectionConfig:
    """Settings of the 1-D advection simulator."""

    resolution: int = 128
    """Number of cells."""
    n_steps: int = 33
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 0.05
    """Time between stored frames."""
    length: float = 1.0
    """Period of the domain [0, length)."""
    speed_range: tuple[float, float] = (0.2, 1.0)
    """Advection speed c ~ U(speed_range), per trajectory."""
    n_modes: int = 4
    """Highest wavenumber in the random initial condition."""
    cfl: float = 0.4
    """Courant number c dt / dx."""
    limiter: str = "mc"
    """Slope limiter: minmod, mc or none."""


SYSTEM = System(
    "advection",
    fields=("u",),
    bc=("periodic",),
    config=AdvectionConfig(),
    description="1-D linear advection, periodic (field u)",
    vocab_epoch=2,
)
SYSTEMS = (SYSTEM,)
"""This module's system (:mod:`jaxfm.data.sim.system`)."""


@partial(jax.jit, static_argnames=("n_frames", "limiter"))
def solve(u0, c, dx, dt, n_frames: int, substeps: int, limiter: str = "mc"):
    """Advect one profile.

    Args:
        u0: ``(n,)`` initial cell averages.
        c: advection speed (scalar).
        dx: cell width.
        dt: time step.
        n_frames: stored frames, the initial one included.
        substeps: time steps per stored frame.
        limiter: slope limiter.

    Returns:
        ``(n_frames, n)`` cell averages.
    """
    flux = lambda w, axis: (c * w, w)
    speed = lambda w, axis: jnp.abs(c) * jnp.ones_like(w[0])
    rhs = lambda q: fv.rusanov_divergence(q, 0, dx, "periodic", limiter, flux, speed)
    step = lambda q: fv.ssp_rk2(rhs, q, dt)
    return rollout(step, u0[None], n_frames, substeps, lambda q: q[0])


def simulate(config: AdvectionConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random trajectories (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n, L = config.resolution, config.length
    x = cell_centres(n, 0.0, L)
    k = np.arange(1, config.n_modes + 1)
    amp = rng.normal(size=(n_traj, config.n_modes)) / k
    phase = rng.uniform(0, 2 * np.pi, size=(n_traj, config.n_modes))
    # Exact cell averages of the sines, so the solution is the shifted IC in the finite-volume
    # sense as well: avg of sin(κx+φ) over a cell = sin(κx_j+φ) · sinc(κ dx / 2).
    kappa = 2 * np.pi * k / L
    dx = L / n
    sinc = np.sin(kappa * dx / 2) / (kappa * dx / 2)
    u0 = np.einsum("tk,tkx->tx", amp * sinc, np.sin(kappa[None, :, None] * x + phase[..., None]))
    c = sample_uniform(rng, config.speed_range, n_traj)
    sub, dt = substeps_for(config.frame_dt, config.cfl * dx / max(np.abs(c).max(), 1e-12))
    run = jax.vmap(lambda u, cc: solve(u, cc, dx, dt, config.n_steps, sub, config.limiter))
    out = run(jnp.asarray(u0, jnp.float32), jnp.asarray(c, jnp.float32))
    return SYSTEM.trajectories(
        np.asarray(out)[..., None],
        config,
        coords=(x,),
        params={"speed": c},
        seed=seed,
        scheme="MUSCL-Rusanov-SSPRK2",
        substeps=sub,
    )
