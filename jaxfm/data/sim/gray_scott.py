"""2-D Gray-Scott reaction-diffusion, periodic, IMEX spectral (The Well's
``gray_scott_reaction_diffusion`` setting; Pearson, *Science* 261, 1993).

    A_t = D_A ΔA - A B² + F (1 - A),      B_t = D_B ΔB + A B² - (F + k) B

Semi-implicit Euler: the reaction explicit, the diffusion implicit in Fourier space,
``Â ← (Â + dt R̂_A) / (1 + dt D_A |k|²)``; unconditionally stable for the diffusion, so ``dt`` is
set by the reaction (dt = 1 as in The Well). Without reaction (``F = k = 0``, ``B = 0``) the
scheme decays a Fourier mode by ``1/(1 + dt D |k|²)`` per step: first order towards the heat
kernel ``exp(-D |k|² t)``, which the tests check.

Each trajectory draws a pattern regime (The Well's six (F, k) pairs, recorded as ``F`` and
``k``) and starts from ``A = 1, B = 0`` with a few random Gaussian seeds where ``B ≈ 0.5``,
``A ≈ 0.5``. Domain ``[-1, 1]²``. Output fields ``A``, ``B`` (The Well's names; the field
registry reads the former ``concentration_A``, ``concentration_B`` of saved checkpoints as
these, :data:`jaxfm.data.fields.FIELD_ALIASES`): ``(n_traj, n_steps, n, n, 2)``.
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxfm.data.sim.stepping import cell_centres, rollout, substeps_for
from jaxfm.data.sim.system import System
from jaxfm.data.trajectories import TrajectorySet

PATTERNS = {
    "gliders": (0.014, 0.054),
    "bubbles": (0.098, 0.057),
    "maze": (0.029, 0.057),
    "worms": (0.058, 0.065),
    "spirals": (0.018, 0.051),
    "spots": (0.03, 0.062),
}
"""(F, k) of the pattern regimes used by The Well."""


@dataclasses.dataclass(frozen=True)
class GrayScottConfig:
    """Settings of the Gray-Scott simulator."""

    resolution: int = 64
    """Grid points per side."""
    n_steps: int = 33
    """Stored frames per trajectory, the initial one included."""
    frame_dt: float = 40.0
    """Time between stored frames."""
    dt: float = 1.0
    """Time step (the reaction is explicit)."""
    d_a: float = 8e-5
    """Diffusivity of A (4x The Well's 2e-5, so patterns form within a few thousand steps)."""
    d_b: float = 4e-5
    """Diffusivity of B (4x The Well's 1e-5)."""
    patterns: tuple[str, ...] = tuple(PATTERNS)
    """Pattern regimes to draw from uniformly (keys of PATTERNS)."""
    n_seeds: int = 8
    """Number of Gaussian seeds of B in the initial condition."""


SYSTEM = System(
    "gray_scott",
    fields=("A", "B"),
    bc=("periodic", "periodic"),
    config=GrayScottConfig(),
    description="2-D Gray-Scott reaction-diffusion, IMEX spectral, periodic",
    vocab_epoch=1,
    mix_order=3,
)
SYSTEMS = (SYSTEM,)
"""This module's system (:mod:`jaxfm.data.sim.system`)."""


def step(s, f, k, dt, lap_da, lap_db):
    """One IMEX step of ``s = (A, B)`` (``(2, n, n)``); ``lap_d* = D |k|²`` on the FFT grid."""
    a, b = s
    ab2 = a * b * b
    ra = -ab2 + f * (1 - a)
    rb = ab2 - (f + k) * b
    a = jnp.fft.ifft2(jnp.fft.fft2(a + dt * ra) / (1 + dt * lap_da)).real
    b = jnp.fft.ifft2(jnp.fft.fft2(b + dt * rb) / (1 + dt * lap_db)).real
    return jnp.stack([a, b])


@partial(jax.jit, static_argnames=("n_frames",))
def solve(s0, f, k, d_a, d_b, dt, length, n_frames: int, substeps: int):
    """Evolve ``s0 = (A, B)`` (``(2, n, n)``, periodic box of side ``length``).

    Returns:
        ``(n_frames, n, n, 2)``.
    """
    n = s0.shape[-1]
    kk = 2 * jnp.pi * jnp.fft.fftfreq(n, length / n)
    k2 = kk[:, None] ** 2 + kk[None, :] ** 2
    stepper = lambda s: step(s, f, k, dt, d_a * k2, d_b * k2)
    return rollout(stepper, s0, n_frames, substeps, lambda s: jnp.moveaxis(s, 0, -1))


def simulate(config: GrayScottConfig, n_traj: int, seed: int) -> TrajectorySet:
    """Simulate ``n_traj`` random trajectories (see the module docstring)."""
    unknown = [p for p in config.patterns if p not in PATTERNS]
    if unknown or not config.patterns:
        raise ValueError(f"gray_scott patterns {unknown} unknown; choose from {list(PATTERNS)}")
    rng = np.random.default_rng(seed)
    n = config.resolution
    x = cell_centres(n, -1.0, 1.0)
    X, Y = np.meshgrid(x, x, indexing="ij")
    names = [config.patterns[i] for i in rng.integers(len(config.patterns), size=n_traj)]
    fk = np.array([PATTERNS[p] for p in names])
    s0 = np.empty((n_traj, 2, n, n))
    for i in range(n_traj):
        cx, cy = rng.uniform(-0.8, 0.8, size=(2, config.n_seeds))
        # Periodic distance, so seeds near an edge wrap around.
        ddx = (X[None] - cx[:, None, None] + 1) % 2 - 1
        ddy = (Y[None] - cy[:, None, None] + 1) % 2 - 1
        blob = np.exp(-(ddx**2 + ddy**2) / (2 * 0.05**2)).sum(0)
        b = np.clip(blob, 0, 1) * 0.5 + 0.02 * rng.uniform(size=(n, n))
        s0[i] = np.stack([1 - b, b])
    sub, dt = substeps_for(config.frame_dt, config.dt)
    run = jax.vmap(
        lambda s, f, k: solve(s, f, k, config.d_a, config.d_b, dt, 2.0, config.n_steps, sub)
    )
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    out = run(f32(s0), f32(fk[:, 0]), f32(fk[:, 1]))
    return SYSTEM.trajectories(
        out,
        config,
        coords=(x, x),
        params={"F": fk[:, 0], "k": fk[:, 1]},
        seed=seed,
        scheme="IMEX spectral (explicit reaction)",
        substeps=sub,
    )
