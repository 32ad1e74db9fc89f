"""Small files of one's own for the data-source tests: random Well-layout trajectories and
a PDEBench compressible-flow file (written directly, no simulation)."""

import numpy as np

from jaxfm.data.trajectories import TrajectorySet
from tests.data.pdebench_files import cfd_name, write_cfd

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
    """A 2-D PDEBench compressible-flow file at Mach 1 (density, pressure, Vx, Vy), written as
    PDEBench's generator writes it."""
    return write_cfd(path, (grid, grid), n=n, n_frames=steps, mach=1.0)


NS = ("velocity_x", "velocity_y", "tracer")
MHD = ("density", "magnetic_x", "magnetic_y")
CFD_NAME = cfd_name(2, mach=1.0, res=str(GRID))
