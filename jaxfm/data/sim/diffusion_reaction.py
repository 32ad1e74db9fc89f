"""2-D FitzHugh-Nagumo diffusion-reaction with no-flux boundaries (the PDEBench ``2D_diff-react``
setting, Takamoto et al. 2022).

    u_t = D_u Δu + u - u³ - k - v,      v_t = D_v Δv + u - v

Finite volume on ``[-1, 1]²``: five-point Laplacian with mirrored ghost cells (zero normal flux,
so ``Σ u`` changes only through the reaction term, exactly), Heun/SSP-RK2 in time with
``dt ≤ min(0.2 dx² / max D, dt_max)``. With the reaction switched off the scheme is the discrete
heat equation: a mode ``cos(mπ(x+1)/2)`` decays at ``D (mπ/2)²`` up to ``O(dx²)``, which the
tests check together with exact mass conservation.

Initial condition as in PDEBench: ``u, v ~ N(0, 1)`` independently per cell; ``k ~ U(k_range)``,
``D_u ~ U(du_range)``, ``D_v ~ U(dv_range)`` per trajectory (recorded as ``k``, ``du``, ``dv``).
Output fields ``activator`` (u), ``inhibitor`` (v): ``(n_traj, n_steps, n, n, 2)``.
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
class DiffusionReactionConfig:
    """Settings of the FitzHugh-Nagumo simulator."""

    resolution: int = 64
    """Cells per side."""
    n_steps: int = 33
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 5.0 / 32
    """Time between stored frames (PDEBench: t ∈ [0, 5])."""
    du_range: tuple[float, float] = (1e-3, 1e-3)
    """Activator diffusivity D_u ~ U(du_range) (PDEBench: 1e-3)."""
    dv_range: tuple[float, float] = (5e-3, 5e-3)
    """Inhibitor diffusivity D_v ~ U(dv_range) (PDEBench: 5e-3)."""
    k_range: tuple[float, float] = (2.5e-3, 1e-2)
    """Reaction constant k ~ U(k_range) (PDEBench: 5e-3)."""
    dt_max: float = 0.005
    """Upper bound on the time step (reaction stiffness, |1 - 3u²| dt ≲ 0.1)."""


SYSTEM = System(
    "diffusion_reaction",
    fields=("activator", "inhibitor"),
    bc=("wall", "wall"),
    config=DiffusionReactionConfig(),
    description="2-D FitzHugh-Nagumo, FV, no-flux boundaries",
    mix_order=1,
)
SYSTEMS = (SYSTEM,)
"""This module's system (:mod:`jaxfm.data.sim.system`)."""


def neumann_laplacian(f, dx):
    """Five-point Laplacian of ``(nx, ny)`` cell values with zero-flux (mirrored) boundaries."""
    p = jnp.pad(f, 1, mode="edge")
    return (p[2:, 1:-1] + p[:-2, 1:-1] + p[1:-1, 2:] + p[1:-1, :-2] - 4 * f) / (dx * dx)


def rhs(s, du, dv, k, dx, reaction: bool = True):
    """``d(u, v)/dt`` for ``s = (u, v)`` of shape ``(2, nx, ny)``."""
    u, v = s
    fu, fv_ = du * neumann_laplacian(u, dx), dv * neumann_laplacian(v, dx)
    if reaction:
        fu = fu + u - u**3 - k - v
        fv_ = fv_ + u - v
    return jnp.stack([fu, fv_])


@partial(jax.jit, static_argnames=("n_frames", "reaction"))
def solve(s0, du, dv, k, dx, dt, n_frames: int, substeps: int, reaction: bool = True):
    """Evolve ``s0 = (u, v)`` (``(2, nx, ny)``); returns ``(n_frames, nx, ny, 2)``."""
    step = lambda s: fv.ssp_rk2(lambda q: rhs(q, du, dv, k, dx, reaction), s, dt)
    return rollout(step, s0, n_frames, substeps, lambda s: jnp.moveaxis(s, 0, -1))


def simulate(config: DiffusionReactionConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random trajectories (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = config.resolution
    du = sample_uniform(rng, config.du_range, n_traj)
    dv = sample_uniform(rng, config.dv_range, n_traj)
    k = sample_uniform(rng, config.k_range, n_traj)
    s0 = rng.normal(size=(n_traj, 2, n, n))
    dx = 2.0 / n
    dmax = max(du.max(), dv.max())
    sub, dt = substeps_for(config.frame_dt, min(0.2 * dx * dx / dmax, config.dt_max))
    run = jax.vmap(lambda s, a, b, c: solve(s, a, b, c, dx, dt, config.n_steps, sub))
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    out = run(f32(s0), f32(du), f32(dv), f32(k))
    x = cell_centres(n, -1.0, 1.0)
    return SYSTEM.trajectories(
        out,
        config,
        coords=(x, x),
        params={"du": du, "dv": dv, "k": k},
        seed=seed,
        scheme="FV 5-point Laplacian, Neumann, Heun",
        substeps=sub,
    )
