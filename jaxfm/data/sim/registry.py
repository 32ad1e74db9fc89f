"""Name -> simulator registry, collected from the modules' ``System`` declarations.

The modules are listed by hand in :data:`MODULES` (no import-time discovery); each declares
``SYSTEMS`` (:class:`jaxfm.data.sim.system.System`) next to its config class and defines
``simulate(config, n_traj, seed) -> TrajectorySet``. Everything else that names systems or
fields (the field and system registries, the generator's corpus, the surrogate pipeline's
pretraining/fine-tuning lists, the padding width) is derived from :data:`SYSTEMS` by the
functions of :mod:`jaxfm.data.sim.system`. The order of :data:`MODULES` is the system id
order: new modules go at the end.
"""

import dataclasses
from collections.abc import Callable

from jaxfm.data.sim import (
    advection,
    burgers,
    compressible,
    diffusion_reaction,
    gray_scott,
    navier_stokes,
    shallow_water,
)
from jaxfm.data.sim.system import System, collect
from jaxfm.data.trajectories import TrajectorySet

MODULES = (
    shallow_water,
    navier_stokes,
    diffusion_reaction,
    gray_scott,
    compressible,
    advection,
    burgers,
)
"""Simulator modules, in system-id order (append new ones)."""

SYSTEMS: tuple[System, ...] = collect(MODULES)
"""Every declared system, in declaration (= system id) order."""


@dataclasses.dataclass(frozen=True)
class Simulator:
    """One registered system: its declaration and the function that simulates it."""

    system: System
    """The declaration (name, fields, boundary conditions, default config)."""
    simulate: Callable[..., TrajectorySet]
    """``simulate(config, n_traj, seed) -> TrajectorySet``."""

    @property
    def config(self):
        """Default config instance (a frozen dataclass)."""
        return self.system.config

    @property
    def description(self) -> str:
        """One line for ``--help``."""
        return self.system.description


def simulators(modules=MODULES) -> dict[str, Simulator]:
    """``{name: Simulator}`` of the systems declared by ``modules``, in declaration order."""
    return {s.name: Simulator(s, m.simulate) for m in modules for s in collect([m])}


SIMULATORS: dict[str, Simulator] = simulators()
"""All systems, by name, in declaration order. Held out for transfer: the ``held_out`` ones
(the two compressible systems)."""


def get_simulator(name: str) -> Simulator:
    """The registered simulator ``name``; an unknown name lists the valid ones."""
    try:
        return SIMULATORS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; choose one of {sorted(SIMULATORS)}") from None


def configured(name: str, **overrides):
    """The default config of simulator ``name`` with ``overrides`` applied; an unknown field
    or a non-number for a numeric field is a one-line ValueError naming it."""
    sim = get_simulator(name)
    fields = {f.name for f in dataclasses.fields(sim.config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"{name}: unknown config fields {bad}; valid: {sorted(fields)}")
    for key, value in overrides.items():
        default = getattr(sim.config, key)
        number = isinstance(default, int | float) and not isinstance(default, bool)
        if number and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{name}: {key}={value!r} is not a number (default {default!r})")
    return dataclasses.replace(sim.config, **overrides)


def simulate(name: str, n_traj: int, seed: int, **overrides) -> TrajectorySet:
    """Run system ``name`` with its default config updated by ``overrides``.

    Args:
        name: a key of :data:`SIMULATORS`.
        n_traj: number of trajectories.
        seed: random seed of the initial conditions and parameters.
        **overrides: config fields to replace (e.g. ``resolution=32, n_steps=17``).
    """
    return get_simulator(name).simulate(configured(name, **overrides), n_traj, seed)
