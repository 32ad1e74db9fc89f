"""PDE simulators in pure JAX (one file per system) and their name registry.

Each system module has a frozen ``*Config`` dataclass, its ``SYSTEMS`` declarations
(:class:`jaxfm.data.sim.system.System`: name, fields, boundary conditions, default config; the
one source every system and field list is derived from), a jitted ``solve`` for one trajectory
(used directly by the physics tests) and ``simulate(config, n_traj, seed) -> TrajectorySet``
that draws random initial conditions/parameters and vmaps ``solve`` over trajectories.

The registry's names load on first use (:mod:`jaxfm._lazy`), so importing one simulator
module never re-enters this package while it is still initialising.
"""

from jaxfm._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("SIMULATORS", "SYSTEMS", "Simulator", "get_simulator", "simulate"),
            "jaxfm.data.sim.registry",
        ),
        "System": "jaxfm.data.sim.system",
    },
)
