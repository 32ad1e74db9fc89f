"""2-D compressible Euler / Navier-Stokes, periodic, turbulent initial field (PDEBench ``Turb``).

Conservative variables ``(ρ, ρu, ρv, E)``, ideal gas ``p = (γ - 1)(E - ρ|u|²/2)``, γ = 5/3.
Finite volume: MUSCL (minmod on the primitive variables ``(ρ, u, v, p)``, which keeps ρ and p
positive far better than reconstructing ``E``) + Rusanov flux with speed ``|u_n| + c``, SSP-RK2.
Optional viscous stress ``τ = η(∇u + ∇uᵀ) + (ζ - 2η/3)(∇·u) I`` (centred differences) enters the
momentum and energy fluxes; ``η = ζ = 0`` gives the Euler equations (PDEBench's Turb files use
η = ζ = 1e-8, i.e. effectively inviscid). Periodic boundaries: total mass, momentum and energy
change only by round-off (tested). Takamoto et al., *PDEBench*, NeurIPS 2022.

Initial condition: ``ρ = 1``, sound speed ``c_s = 1/M`` so ``p = c_s²/γ``; a solenoidal random
velocity (from a stream function with energy spectrum ``E(k) ∝ k^-1/2``, wavenumbers 1..k_max,
random phases) scaled to mean speed 1. Recorded: ``mach``.
Output fields ``velocity_x``, ``velocity_y``, ``density``, ``pressure``:
``(n_traj, n_steps, n, n, 4)`` on ``[0, 1)²``, 21 frames over t ∈ [0, 1] by default.
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
class CompressibleConfig:
    """Settings of the compressible-flow simulator."""

    resolution: int = 64
    """Cells per side."""
    n_steps: int = 21
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 0.05
    """Time between stored frames."""
    mach: float = 1.0
    """Mach number M = (mean speed) / c_s of the initial field (PDEBench Turb: 0.1 or 1.0)."""
    gamma: float = 5.0 / 3.0
    """Ratio of specific heats."""
    eta: float = 0.0
    """Shear viscosity η (0 = Euler)."""
    zeta: float = 0.0
    """Bulk viscosity ζ."""
    k_max: int = 8
    """Highest wavenumber of the initial velocity field."""
    cfl: float = 0.3
    """Courant number (max|u| + c) dt / dx, with 25% headroom on the initial max|u|."""
    limiter: str = "minmod"
    """Slope limiter: minmod, mc or none."""


FIELDS = ("velocity_x", "velocity_y", "density", "pressure")
"""Fields of every Mach number."""
BC = ("periodic", "periodic")
"""Boundary conditions of every Mach number."""


def _system(mach: float) -> System:
    return System(
        f"compressible_m{mach:g}",
        fields=FIELDS,
        bc=BC,
        config=CompressibleConfig(mach=mach),
        description=f"2-D compressible Euler, turbulent IC, Mach {mach:.1f}, periodic",
        held_out=True,
    )


SYSTEMS = (_system(0.1), _system(1.0))
"""The two registered Mach numbers, held out for transfer (:mod:`jaxfm.data.sim.system`);
``simulate`` runs any Mach number as ``compressible_m{mach:g}``."""


def primitive(q, gamma):
    """``(ρ, u, v, p)`` from ``(ρ, ρu, ρv, E)``."""
    rho, mx, my, e = q
    u, v = mx / rho, my / rho
    return jnp.stack([rho, u, v, (gamma - 1) * (e - 0.5 * rho * (u * u + v * v))])


def conservative(w, gamma):
    """``(ρ, ρu, ρv, E)`` from ``(ρ, u, v, p)``."""
    rho, u, v, p = w
    return jnp.stack([rho, rho * u, rho * v, p / (gamma - 1) + 0.5 * rho * (u * u + v * v)])


def _viscous_flux_divergence(w, dx, eta, zeta):
    """Divergence of the viscous fluxes (momentum and energy), centred differences."""
    d = lambda f, ax: (jnp.roll(f, -1, ax) - jnp.roll(f, 1, ax)) / (2 * dx)
    _, u, v, _ = w
    ux, uy, vx, vy = d(u, 0), d(u, 1), d(v, 0), d(v, 1)
    div = ux + vy
    lam = zeta - 2.0 * eta / 3.0
    txx = 2 * eta * ux + lam * div
    tyy = 2 * eta * vy + lam * div
    txy = eta * (uy + vx)
    mom_x = d(txx, 0) + d(txy, 1)
    mom_y = d(txy, 0) + d(tyy, 1)
    en = d(txx * u + txy * v, 0) + d(txy * u + tyy * v, 1)
    return jnp.stack([jnp.zeros_like(u), mom_x, mom_y, en])


def rhs(q, dx, gamma, eta=0.0, zeta=0.0, limiter: str = "minmod", viscous: bool = False):
    """``dq/dt`` for ``q = (ρ, ρu, ρv, E)`` of shape ``(4, nx, ny)``, periodic."""

    def flux(w, axis):
        rho, u, v, p = w
        un = (u, v)[axis]
        qf = conservative(w, gamma)
        f = jnp.stack(
            [
                rho * un,
                qf[1] * un + (p if axis == 0 else 0.0),
                qf[2] * un + (p if axis == 1 else 0.0),
                (qf[3] + p) * un,
            ]
        )
        return f, qf

    def speed(w, axis):
        return jnp.abs(w[1 + axis]) + jnp.sqrt(gamma * w[3] / w[0])

    w = primitive(q, gamma)
    # Velocity components (1, 2) swap places in the y pass (primitive and conservative alike).
    out = fv.rusanov_divergence_2d(w, dx, "periodic", limiter, flux, speed, swap=(1, 2))
    if viscous:
        out = out + _viscous_flux_divergence(w, dx, eta, zeta)
    return out


@partial(jax.jit, static_argnames=("n_frames", "limiter", "viscous"))
def solve(
    w0,
    dx,
    dt,
    gamma,
    eta,
    zeta,
    n_frames: int,
    substeps: int,
    limiter: str = "minmod",
    viscous: bool = False,
):
    """Evolve primitive ``w0 = (ρ, u, v, p)`` (``(4, nx, ny)``).

    Returns:
        ``(n_frames, nx, ny, 4)`` frames of ``(u, v, ρ, p)``.
    """
    f = lambda q: rhs(q, dx, gamma, eta, zeta, limiter, viscous)
    step = lambda q: fv.ssp_rk2(f, q, dt)

    def observe(q):
        rho, u, v, p = primitive(q, gamma)
        return jnp.stack([u, v, rho, p], -1)

    return rollout(step, conservative(w0, gamma), n_frames, substeps, observe)


def turbulent_velocity(rng: np.random.Generator, n: int, k_max: int) -> np.ndarray:
    """Divergence-free random velocity ``(2, n, n)`` on ``[0,1)²`` with mean speed 1.

    The stream function has ``|ψ̂(k)| ∝ k^-1.75`` (so ``|û| ∝ k^-0.75`` and the shell energy
    ``E(k) ∝ k·|û|² ∝ k^-1/2``) for ``1 ≤ |k| ≤ k_max``, random phases.
    """
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = k[:, None], k[None, :]
    kk = np.sqrt(kx**2 + ky**2)
    band = (kk >= 1) & (kk <= k_max)
    amp = np.where(band, np.maximum(kk, 1) ** -1.75, 0.0)
    psi_hat = amp * np.exp(2j * np.pi * rng.uniform(size=(n, n)))
    psi = np.fft.ifft2(psi_hat).real
    psi_hat = np.fft.fft2(psi)  # the real part's transform is Hermitian
    u = np.fft.ifft2(2j * np.pi * ky * psi_hat).real
    v = np.fft.ifft2(-2j * np.pi * kx * psi_hat).real
    scale = 1.0 / np.mean(np.sqrt(u**2 + v**2))
    return np.stack([u, v]) * scale


def simulate(config: CompressibleConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random turbulent fields (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n, g = config.resolution, config.gamma
    cs = 1.0 / config.mach
    vel = np.stack([turbulent_velocity(rng, n, config.k_max) for _ in range(n_traj)])
    w0 = np.concatenate(
        [np.ones((n_traj, 1, n, n)), vel, np.full((n_traj, 1, n, n), cs * cs / g)], axis=1
    )
    dx = 1.0 / n
    umax = np.sqrt((vel**2).sum(1)).max()
    sub, dt = substeps_for(config.frame_dt, config.cfl * dx / (1.25 * umax + cs))
    viscous = config.eta > 0 or config.zeta > 0
    run = jax.vmap(
        lambda w: solve(
            w, dx, dt, g, config.eta, config.zeta, config.n_steps, sub, config.limiter, viscous
        )
    )
    out = run(jnp.asarray(w0, jnp.float32))
    x = cell_centres(n, 0.0, 1.0)
    return _system(config.mach).trajectories(
        out,
        config,
        coords=(x, x),
        params={"mach": np.full(n_traj, config.mach)},
        seed=seed,
        scheme="MUSCL(primitive)-Rusanov-SSPRK2",
        substeps=sub,
    )
