"""PDE simulators in pure JAX (one file per system) and their name registry.

Each system module has a frozen ``*Config`` dataclass, a jitted ``solve`` for one trajectory
(used directly by the physics tests) and ``simulate(config, n_traj, seed) -> TrajectorySet``
that draws random initial conditions/parameters and vmaps ``solve`` over trajectories.
"""

from jaxfm.data.sim.registry import SIMULATORS, Simulator, get_simulator, simulate

__all__ = ["SIMULATORS", "Simulator", "get_simulator", "simulate"]
