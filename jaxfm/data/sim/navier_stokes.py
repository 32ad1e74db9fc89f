"""2-D incompressible Navier-Stokes (vorticity form) with a passive tracer, periodic box.

    ω_t + u·∇ω = ν Δω,     c_t + u·∇c = κ Δc,     Δψ = -ω,   u = ∂ψ/∂y,  v = -∂ψ/∂x

Pseudo-spectral (Fourier) in space with the 2/3 dealiasing rule, and Lawson's integrating-factor
RK4 in time, so the viscous decay of each Fourier mode is exact: the Taylor-Green vortex
``ω = 2 sin x sin y`` (a steady solution of the Euler equations) decays as ``exp(-2νt)`` to
round-off, which the tests check. The mean tracer concentration is conserved exactly (with the
2/3 rule no product aliases onto the zero mode). See Canuto et al., *Spectral Methods*, 2006.

Random initial conditions: vorticity with an isotropic spectrum ``|ω̂| ∝ exp(-(|k|-k0)²/2)``,
random phases, ``k0 ~ U(k0_range)``, scaled to rms velocity 1; tracer
``c = (1 + tanh(φ / 0.2)) / 2`` for a smooth random field φ of unit variance (a sharp, bounded
front). ``ν ~ logU(nu_range)``; ``κ = ν`` (Schmidt number 1). Recorded: ``nu``, ``k0``.

Output fields ``velocity_x``, ``velocity_y``, ``tracer``: ``(n_traj, n_steps, n, n, 3)`` on
``[0, 2π)²`` (cell centres).
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxfm.data.sim.stepping import cell_centres, rollout, substeps_for, wavenumbers
from jaxfm.data.sim.system import System
from jaxfm.data.trajectories import TrajectorySet


@dataclasses.dataclass(frozen=True)
class NavierStokesConfig:
    """Settings of the incompressible Navier-Stokes simulator."""

    resolution: int = 64
    """Grid points per side."""
    n_steps: int = 33
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 0.25
    """Time between stored frames (box side 2π, rms velocity 1 at t = 0)."""
    nu_range: tuple[float, float] = (1e-3, 5e-3)
    """Viscosity ν ~ log-uniform on this range, per trajectory (tracer diffusivity κ = ν)."""
    k0_range: tuple[float, float] = (2.0, 5.0)
    """Peak wavenumber of the initial vorticity spectrum ~ U(k0_range)."""
    cfl: float = 0.5
    """Courant number max|u| dt / dx."""


SYSTEM = System(
    "navier_stokes",
    fields=("velocity_x", "velocity_y", "tracer"),
    bc=("periodic", "periodic"),
    config=NavierStokesConfig(),
    description="2-D incompressible NS + passive tracer, spectral, periodic",
    mix_order=2,
)
SYSTEMS = (SYSTEM,)
"""This module's system (:mod:`jaxfm.data.sim.system`)."""


class SpectralGrid:
    """Wavenumbers and dealiasing mask for an ``n × n`` periodic grid of side ``length``."""

    def __init__(self, n: int, length: float = 2 * np.pi):
        k = wavenumbers(n, length)
        self.kx = jnp.asarray(k[:, None])
        self.ky = jnp.asarray(k[None, :])
        k2 = self.kx**2 + self.ky**2
        self.k2 = k2
        self.inv_k2 = jnp.where(k2 > 0, 1.0 / jnp.where(k2 > 0, k2, 1.0), 0.0)
        kmax = np.abs(k).max()
        self.dealias = (jnp.abs(self.kx) < 2 / 3 * kmax) & (jnp.abs(self.ky) < 2 / 3 * kmax)

    def velocity(self, w_hat):
        """Velocity ``(u, v)`` in physical space from the vorticity transform."""
        psi = w_hat * self.inv_k2
        u = jnp.fft.ifft2(1j * self.ky * psi).real
        v = jnp.fft.ifft2(-1j * self.kx * psi).real
        return u, v

    def advection(self, u, v, s_hat):
        """Transform of ``-(u·∇)s``, dealiased."""
        sx = jnp.fft.ifft2(1j * self.kx * s_hat).real
        sy = jnp.fft.ifft2(1j * self.ky * s_hat).real
        return self.dealias * jnp.fft.fft2(-(u * sx + v * sy))


def step(grid: SpectralGrid, state, nu, dt):
    """One Lawson integrating-factor RK4 step of ``(ω̂, ĉ)`` (stacked on axis 0)."""
    e = jnp.exp(-nu * grid.k2 * dt / 2)[None]  # half-step viscous decay (κ = ν), both fields

    def n_of(s):
        u, v = grid.velocity(s[0])
        return jnp.stack([grid.advection(u, v, s[0]), grid.advection(u, v, s[1])])

    a = n_of(state)
    b = n_of(e * (state + dt / 2 * a))
    c = n_of(e * state + dt / 2 * b)
    d = n_of(e * e * state + dt * e * c)
    return e * e * state + dt / 6 * (e * e * a + 2 * e * (b + c) + d)


@partial(jax.jit, static_argnames=("n", "n_frames"))
def solve(w0, c0, nu, dt, n: int, n_frames: int, substeps: int):
    """Evolve vorticity ``w0`` and tracer ``c0`` (``(n, n)`` on ``[0, 2π)²``).

    Returns:
        ``(n_frames, n, n, 3)`` frames of ``(u, v, c)``.
    """
    grid = SpectralGrid(n)

    def observe(s):
        u, v = grid.velocity(s[0])
        return jnp.stack([u, v, jnp.fft.ifft2(s[1]).real], -1)

    s0 = jnp.stack([jnp.fft.fft2(w0), jnp.fft.fft2(c0)]).astype(jnp.complex64)
    return rollout(lambda s: step(grid, s, nu, dt), s0, n_frames, substeps, observe)


def _random_field(rng, n, k0, width=1.0):
    """Real random field with isotropic spectrum exp(-(|k|-k0)²/(2 width²)), unit variance."""
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    spec = np.exp(-((kk - k0) ** 2) / (2 * width**2)) * (kk > 0)
    noise = np.fft.fft2(rng.normal(size=(n, n)))
    f = np.fft.ifft2(noise * spec).real
    return f / (f.std() + 1e-12)


def simulate(config: NavierStokesConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random trajectories (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = config.resolution
    grid = SpectralGrid(n)
    k0 = rng.uniform(*config.k0_range, size=n_traj)
    lo, hi = np.log(config.nu_range[0]), np.log(config.nu_range[1])
    nu = np.exp(rng.uniform(lo, hi, size=n_traj))
    w0, c0, umax = [], [], 0.0
    for i in range(n_traj):
        w = _random_field(rng, n, k0[i])
        u, v = (np.asarray(a) for a in grid.velocity(jnp.fft.fft2(jnp.asarray(w))))
        scale = 1.0 / np.sqrt(np.mean(u**2 + v**2))  # rms velocity 1
        w0.append(w * scale)
        umax = max(umax, scale * np.sqrt(u**2 + v**2).max())
        c0.append(0.5 * (1 + np.tanh(_random_field(rng, n, 2.0) / 0.2)))
    dx = 2 * np.pi / n
    # 2-D decaying turbulence: max|u| stays close to its initial value; 0.5 of CFL headroom.
    sub, dt = substeps_for(config.frame_dt, config.cfl * dx / umax)
    run = jax.vmap(lambda w, c, v: solve(w, c, v, dt, n, config.n_steps, sub))
    out = run(
        jnp.asarray(np.stack(w0), jnp.float32),
        jnp.asarray(np.stack(c0), jnp.float32),
        jnp.asarray(nu, jnp.float32),
    )
    x = cell_centres(n, 0.0, 2 * np.pi)
    return SYSTEM.trajectories(
        out,
        config,
        coords=(x, x),
        params={"nu": nu, "k0": k0},
        seed=seed,
        scheme="pseudo-spectral, 2/3 dealiasing, IF-RK4",
        substeps=sub,
    )
