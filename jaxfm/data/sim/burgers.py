"""1-D viscous Burgers ``u_t + (u²/2)_x = ν u_xx`` on a periodic interval.

Finite volume: MUSCL + Rusanov for the convective flux (speed ``|u|``), a centred three-point
Laplacian for the viscous term, SSP-RK2 in time; ``dt`` obeys both the CFL bound
``cfl·dx/max|u|`` and the explicit-diffusion bound ``dx²/(4ν)``. Mass ``Σ u dx`` is conserved to
round-off. Before the shock time ``1/max(-u0')`` the inviscid solution is known implicitly,
``u = u0(x - u t)`` along characteristics, which the tests use for the convergence order.

Initial condition as in :mod:`jaxfm.data.sim.advection` (random sines), scaled to amplitude
``amplitude``; ``ν ~ logU(nu_range)`` per trajectory (recorded as ``nu``).
Output field: ``velocity_x``, shape ``(n_traj, n_steps, resolution, 1)``.
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxfm.data.sim import finite_volume as fv
from jaxfm.data.sim.stepping import cell_centres, rollout, substeps_for
from jaxfm.data.sim.system import System
from jaxfm.data.trajectories import TrajectorySet


@dataclasses.dataclass(frozen=True)
class BurgersConfig:
    """Settings of the 1-D Burgers simulator."""

    resolution: int = 128
    """Number of cells."""
    n_steps: int = 33
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 0.02
    """Time between stored frames."""
    length: float = 1.0
    """Period of the domain [0, length)."""
    amplitude: float = 0.5
    """Maximum |u| of the initial condition."""
    nu_range: tuple[float, float] = (1e-3, 1e-2)
    """Viscosity ν ~ log-uniform on this range, per trajectory."""
    n_modes: int = 3
    """Highest wavenumber in the random initial condition."""
    cfl: float = 0.4
    """Courant number max|u| dt / dx."""
    limiter: str = "mc"
    """Slope limiter: minmod, mc or none."""


SYSTEM = System(
    "burgers",
    fields=("velocity_x",),
    bc=("periodic",),
    config=BurgersConfig(),
    description="1-D viscous Burgers, periodic (velocity_x)",
    vocab_epoch=2,
)
SYSTEMS = (SYSTEM,)
"""This module's system (:mod:`jaxfm.data.sim.system`)."""


def rhs(u, nu, dx, limiter: str = "mc"):
    """``du/dt`` for cell averages ``u`` of shape ``(1, n)``."""
    flux = lambda w, axis: (0.5 * w * w, w)
    speed = lambda w, axis: jnp.abs(w[0])
    conv = fv.rusanov_divergence(u, 0, dx, "periodic", limiter, flux, speed)
    lap = (jnp.roll(u, -1, 1) - 2 * u + jnp.roll(u, 1, 1)) / (dx * dx)
    return conv + nu * lap


@partial(jax.jit, static_argnames=("n_frames", "limiter"))
def solve(u0, nu, dx, dt, n_frames: int, substeps: int, limiter: str = "mc"):
    """Evolve ``u0`` (``(n,)``); returns ``(n_frames, n)``."""
    step = lambda q: fv.ssp_rk2(lambda v: rhs(v, nu, dx, limiter), q, dt)
    return rollout(step, u0[None], n_frames, substeps, lambda q: q[0])


def simulate(config: BurgersConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random trajectories (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n, L = config.resolution, config.length
    x = cell_centres(n, 0.0, L)
    k = np.arange(1, config.n_modes + 1)
    amp = rng.normal(size=(n_traj, config.n_modes)) / k
    phase = rng.uniform(0, 2 * np.pi, size=(n_traj, config.n_modes))
    waves = np.sin(2 * np.pi * k[None, :, None] * x / L + phase[..., None])
    u0 = np.einsum("tk,tkx->tx", amp, waves)
    u0 *= config.amplitude / np.abs(u0).max(axis=1, keepdims=True)
    lo, hi = np.log(config.nu_range[0]), np.log(config.nu_range[1])
    nu = np.exp(rng.uniform(lo, hi, size=n_traj))
    dx = L / n
    # Burgers keeps max|u| non-increasing, so the initial bound holds for the whole run.
    dt_max = min(config.cfl * dx / config.amplitude, 0.25 * dx * dx / nu.max())
    sub, dt = substeps_for(config.frame_dt, dt_max)
    run = jax.vmap(lambda u, v: solve(u, v, dx, dt, config.n_steps, sub, config.limiter))
    out = run(jnp.asarray(u0, jnp.float32), jnp.asarray(nu, jnp.float32))
    return SYSTEM.trajectories(
        np.asarray(out)[..., None],
        config,
        coords=(x,),
        params={"nu": nu},
        seed=seed,
        scheme="MUSCL-Rusanov-SSPRK2",
        substeps=sub,
    )
