"""Small files of one's own for the data-source tests: random Well-layout trajectories and
a PDEBench compressible-flow file (written directly, no simulation)."""

import h5py
import numpy as np

from jaxfm.data.trajectories import TrajectorySet

GRID = 8


def trajs(system, fields, n=10, steps=8, grid=GRID, bc=("periodic", "periodic"), seed=0):
    """``n`` random trajectories; channel 0 holds ``100 * trajectory + frame`` for checks."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, steps, *(grid,) * len(bc), len(fields))).astype(np.float32)
    stamp = np.arange(n)[:, None] * 100 + np.arange(steps)[None, :]
    data[..., 0] = stamp.reshape(n, steps, *(1,) * len(bc))
    coords = tuple((np.arange(grid) + 0.5) / grid for _ in bc)
    return TrajectorySet(system, data, fields, 0.1, coords, bc, params={"nu": np.arange(n) * 1.0})


def cfd_file(path, n=6, steps=8, grid=GRID):
    """A PDEBench 2-D compressible-flow file (density, pressure, Vx, Vy)."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        for k in ("density", "pressure", "Vx", "Vy"):
            f.create_dataset(k, data=rng.normal(size=(n, steps, grid, grid)).astype(np.float32))
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, grid, dtype=np.float32))
        f.create_dataset("y-coordinate", data=np.linspace(0, 1, grid, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 1, steps + 1, dtype=np.float32))
    return path


NS = ("velocity_x", "velocity_y", "tracer")
MHD = ("density", "magnetic_x", "magnetic_y")
CFD_NAME = "2D_CFD_Rand_M1.0_Eta0.01_Zeta0.01_periodic_8_Train.hdf5"
