"""Name -> simulator registry. Modules are imported by hand; an unknown name lists the valid ones.

Every entry has a frozen config dataclass with at least ``resolution`` and ``n_steps`` and a
``simulate(config, n_traj, seed) -> TrajectorySet`` function.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxfm.data.sim import (
    advection,
    burgers,
    compressible,
    diffusion_reaction,
    gray_scott,
    navier_stokes,
    shallow_water,
)
from jaxfm.data.trajectories import TrajectorySet


@dataclasses.dataclass(frozen=True)
class Simulator:
    """One registered system."""

    config: Any
    """Default config instance (a frozen dataclass)."""
    simulate: Callable[..., TrajectorySet]
    """``simulate(config, n_traj, seed) -> TrajectorySet``."""
    description: str
    """One line for ``--help``."""


SIMULATORS: dict[str, Simulator] = {
    "advection": Simulator(
        advection.AdvectionConfig(), advection.simulate, "1-D linear advection, periodic (field u)"
    ),
    "burgers": Simulator(
        burgers.BurgersConfig(), burgers.simulate, "1-D viscous Burgers, periodic (velocity_x)"
    ),
    "navier_stokes": Simulator(
        navier_stokes.NavierStokesConfig(),
        navier_stokes.simulate,
        "2-D incompressible NS + passive tracer, spectral, periodic",
    ),
    "shallow_water": Simulator(
        shallow_water.ShallowWaterConfig(),
        shallow_water.simulate,
        "2-D shallow-water radial dam break, FV, open boundaries",
    ),
    "diffusion_reaction": Simulator(
        diffusion_reaction.DiffusionReactionConfig(),
        diffusion_reaction.simulate,
        "2-D FitzHugh-Nagumo, FV, no-flux boundaries",
    ),
    "gray_scott": Simulator(
        gray_scott.GrayScottConfig(),
        gray_scott.simulate,
        "2-D Gray-Scott reaction-diffusion, IMEX spectral, periodic",
    ),
    "compressible_m0.1": Simulator(
        compressible.CompressibleConfig(mach=0.1),
        compressible.simulate,
        "2-D compressible Euler, turbulent IC, Mach 0.1, periodic",
    ),
    "compressible_m1": Simulator(
        compressible.CompressibleConfig(mach=1.0),
        compressible.simulate,
        "2-D compressible Euler, turbulent IC, Mach 1.0, periodic",
    ),
}
"""All systems, by name. Held out for transfer experiments: the two compressible ones."""


def get_simulator(name: str) -> Simulator:
    """The registered simulator ``name``; an unknown name lists the valid ones."""
    try:
        return SIMULATORS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; choose one of {sorted(SIMULATORS)}") from None


def simulate(name: str, n_traj: int, seed: int, **overrides) -> TrajectorySet:
    """Run system ``name`` with its default config updated by ``overrides``.

    Args:
        name: a key of :data:`SIMULATORS`.
        n_traj: number of trajectories.
        seed: random seed of the initial conditions and parameters.
        **overrides: config fields to replace (e.g. ``resolution=32, n_steps=17``).
    """
    sim = get_simulator(name)
    fields = {f.name for f in dataclasses.fields(sim.config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"{name}: unknown config fields {bad}; valid: {sorted(fields)}")
    config = dataclasses.replace(sim.config, **overrides)
    return sim.simulate(config, n_traj, seed)
