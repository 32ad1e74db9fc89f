"""Small synthetic trajectory sets for the data tests (no simulation, no compile)."""

import numpy as np

from jaxfm.data.trajectories import TrajectorySet


def random_set(
    n_traj=5,
    n_steps=8,
    shape=(6, 5),
    system="navier_stokes",
    fields=("velocity_x", "velocity_y", "tracer"),
    seed=0,
) -> TrajectorySet:
    """Random float32 trajectories with offsets per channel, so statistics are non-trivial."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_traj, n_steps, *shape, len(fields))) * (1 + np.arange(len(fields)))
    data += 10.0 * np.arange(len(fields))
    coords = tuple(np.linspace(0, 1, n, endpoint=False) for n in shape)
    return TrajectorySet(
        system=system,
        data=data.astype(np.float32),
        field_names=fields,
        dt=0.1,
        coords=coords,
        bc=("periodic",) * len(shape),
        params={"nu": rng.uniform(size=n_traj)},
        constants={"seed": seed, "scheme": "test"},
    )
