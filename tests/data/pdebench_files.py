"""Small PDEBench files, written the way PDEBench's generators write them (test-only).

Each writer mirrors one upstream code path of ``pdebench/PDEBench`` (key names, nesting, axis
order, dtypes, compression, attributes, the length of the time coordinate), so the readers are
tested against the real layouts rather than against our reading of them:

=====================  ==================================================================
writer                 upstream (repository path: function)
=====================  ==================================================================
``write_advection``    ``pdebench/data_gen/data_gen_NLE/AdvectionEq/advection_multi_
                       solution_Hydra.py: main`` + ``data_gen_NLE/Data_Merge.py: transform``
``write_burgers``      ``pdebench/data_gen/data_gen_NLE/BurgersEq/burgers_multi_solution_
                       Hydra.py: main`` + ``data_gen_NLE/Data_Merge.py: transform``
``write_cfd``          ``pdebench/data_gen/data_gen_NLE/CompressibleFluid/CFD_multi_Hydra.py:
                       main`` + ``data_gen_NLE/Data_Merge.py: merge`` (1-D, 2-D, 3-D)
``write_diff_react``   ``pdebench/data_gen/gen_diff_react.py: simulator`` +
                       ``pdebench/data_gen/src/sim_diff_react.py: Simulator.generate_sample``
``write_rdb``          ``pdebench/data_gen/gen_radial_dam_break.py: simulator`` +
                       ``pdebench/data_gen/src/sim_radial_dam_break.py: Basic2DScenario``
``write_ns_incom``     ``pdebench/data_gen/src/data_io.py: h5_for`` +
                       ``pdebench/data_gen/src/sim_ns_incomp_2d.py: ns_sim`` (``_store``)
=====================  ==================================================================

The stored values are not solutions: every sample is :func:`field_value`, a known function of
trajectory, frame, channel and *physical position*, so a reader that swaps two spatial axes,
two channels or two coordinates returns different numbers (the grids are non-square, with
different x and y coordinates).
"""

from __future__ import annotations

import h5py
import numpy as np
import yaml

CFD_CHANNEL = {"density": 0, "pressure": 1, "Vx": 2, "Vy": 3, "Vz": 4}
"""Channel number that :func:`write_cfd` uses for each upstream key in :func:`field_value`."""


def field_value(traj: int, frame, coords, channel: int) -> np.ndarray:
    """The value stored at every position: ``1000 c + 100 n + 10 t + x + 2 y + 3 z``.

    Args:
        traj: trajectory index ``n``.
        frame: frame index ``t`` (int or array broadcasting against the grid, leading axis).
        coords: coordinates per physical axis, in the order x, y, z.
        channel: channel number ``c``.

    Returns:
        float32 array ``(*frame.shape, len(x), len(y), ...)``, axes in physical order x, y, z.
    """
    grids = np.meshgrid(*[np.asarray(c, np.float64) for c in coords], indexing="ij")
    space = sum((k + 1) * g for k, g in enumerate(grids))
    t = np.asarray(frame, np.float64).reshape(np.shape(frame) + (1,) * len(coords))
    return (1000.0 * channel + 100.0 * traj + 10.0 * t + space).astype(np.float32)


def _cell_centres(lo: float, hi: float, n: int) -> np.ndarray:
    """``xe[:-1] + 0.5 dx`` of the NLE generators (``xe = linspace(lo, hi, n + 1)``), float32."""
    xe = np.linspace(lo, hi, n + 1, dtype=np.float32)
    return (xe[:-1] + np.float32(0.5) * ((hi - lo) / n)).astype(np.float32)


def _nle_times(n_frames: int, dt_save: float) -> np.ndarray:
    """``tc = arange(it_tot + 1) * dt_save``: one more time than stored frames (upstream)."""
    return (np.arange(n_frames + 1) * np.float32(dt_save)).astype(np.float32)


def _write_tensor_1d(path, n, n_frames, nx, lo, hi, dt_save, attrs):
    x = _cell_centres(lo, hi, nx)
    frames = np.arange(n_frames)
    tensor = np.stack([field_value(i, frames, (x,), 0) for i in range(n)])  # (N, T, X)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=tensor.astype(np.float32))
        f.create_dataset("x-coordinate", data=x)
        f.create_dataset("t-coordinate", data=_nle_times(n_frames, dt_save))
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


def write_advection(dir_, n=3, n_frames=6, nx=16, beta=0.4, dt_save=0.01):
    """``1D_Advection_Sols_beta<beta>.hdf5``: ``tensor (N, T, X)``, ``x-coordinate (X,)`` (cell
    centres of [0, 1]), ``t-coordinate (T + 1,)``, attribute ``beta``."""
    path = dir_ / f"1D_Advection_Sols_beta{str(beta)[:5]}.hdf5"
    return _write_tensor_1d(path, n, n_frames, nx, 0.0, 1.0, dt_save, {"beta": float(beta)})


def write_burgers(dir_, n=3, n_frames=6, nx=16, nu=0.001, dt_save=0.01):
    """``1D_Burgers_Sols_Nu<nu>.hdf5``: as :func:`write_advection`, attribute ``Nu``."""
    path = dir_ / f"1D_Burgers_Sols_Nu{str(nu)[:5]}.hdf5"
    return _write_tensor_1d(path, n, n_frames, nx, 0.0, 1.0, dt_save, {"Nu": float(nu)})


def cfd_name(dim: int, mode="Rand", mach=0.1, eta=0.01, zeta=0.01, bd="periodic", res="128"):
    """Released CFD file names, e.g. ``2D_CFD_Turb_M1.0_Eta1e-08_Zeta1e-08_periodic_512_Train``.

    1-D files carry no Mach number and no resolution (``1D_CFD_Rand_Eta0.01_Zeta0.01_periodic_
    Train.hdf5``); ``bd`` is ``periodic`` or ``trans`` (transmissive).
    """
    if dim == 1:
        return f"1D_CFD_{mode}_Eta{eta}_Zeta{zeta}_{bd}_Train.hdf5"
    return f"{dim}D_CFD_{mode}_M{mach}_Eta{eta}_Zeta{zeta}_{bd}_{res}_Train.hdf5"


def write_cfd(path, shape, n=2, n_frames=4, eta=0.01, zeta=0.01, mach=0.1, dt_save=0.05):
    """A CFD file of ``len(shape)`` dimensions, keys as ``Data_Merge.merge`` writes them.

    ``density``, ``pressure``, ``Vx`` (+ ``Vy``, ``y-coordinate`` from 2-D, + ``Vz``,
    ``z-coordinate`` in 3-D), each ``(N, T, *shape)`` float32 with x first (the solver's
    ``Q[:, 2:-2, 2:-2, 2:-2]`` is ``(nx, ny, nz)``, squeezed); ``x-coordinate`` ...;
    ``t-coordinate (T + 1,)``; attributes ``eta``, ``zeta`` (+ ``M`` from 2-D). Coordinates:
    cell centres of x ∈ [0, 1], y ∈ [0, 2], z ∈ [0, 3] (the generator takes any box).
    """
    dim = len(shape)
    coords = [_cell_centres(0.0, float(k + 1), m) for k, m in enumerate(shape)]
    frames = np.arange(n_frames)
    keys = ["density", "pressure", "Vx", "Vy", "Vz"][: 2 + dim]
    with h5py.File(path, "w") as f:
        for key in keys:
            c = CFD_CHANNEL[key]
            f.create_dataset(
                key, data=np.stack([field_value(i, frames, coords, c) for i in range(n)])
            )
        if dim > 1:
            f.create_dataset("y-coordinate", data=coords[1])
        if dim == 3:
            f.create_dataset("z-coordinate", data=coords[2])
        f.create_dataset("x-coordinate", data=coords[0])
        f.create_dataset("t-coordinate", data=_nle_times(n_frames, dt_save))
        f.attrs["eta"] = float(eta)
        f.attrs["zeta"] = float(zeta)
        if dim > 1:
            f.attrs["M"] = float(mach)
    return path


def _hydra_yaml(config: dict) -> str:
    """The ``config`` attribute: the Hydra config as YAML (``OmegaConf.to_yaml``)."""
    return yaml.safe_dump(config, sort_keys=False)


def write_diff_react(dir_, n_seeds=3, n_frames=5, nx=6, ny=4, k=None):
    """``2D_diff-react_NA_NA.h5``: one group per seed ``0000``, ``0001``, ...

    Each group: ``data (T, Ny, Nx, 2)`` float32 (lzf), ``grid/x (Nx,)``, ``grid/y (Ny,)``,
    ``grid/t (T,)`` (``linspace(0, t, tdim)``, one time per frame) and attribute ``config``
    (YAML, ``sim: {Du, Dv, k, ..., seed}``). The solver's state vector is x-fastest (its
    Laplacian couples offsets ±1 with ``dx`` and ±Nx with ``dy``), and ``generate_sample``
    reshapes it to ``(-1, Ny, Nx)``: **y before x** in the file. Domain: x ∈ [-1, 1],
    y ∈ [0, 1.5] (``x_left``... ``y_top`` of the simulator). ``k`` per seed (default 5e-3).
    """
    path = dir_ / "2D_diff-react_NA_NA.h5"
    x_left, x_right, y_bottom, y_top, t_end = -1.0, 1.0, 0.0, 1.5, 5.0
    dx, dy = (x_right - x_left) / nx, (y_top - y_bottom) / ny
    x = np.linspace(x_left + dx / 2, x_right - dx / 2, nx)
    y = np.linspace(y_bottom + dy / 2, y_top - dy / 2, ny)
    t = np.linspace(0, t_end, n_frames)
    k = [5e-3] * n_seeds if k is None else k
    xs, ys = x.astype(np.float32), y.astype(np.float32)
    for i in range(n_seeds):
        # prob.y of solve_ivp: (2 Nx Ny, T), u then v, each flattened x-fastest.
        u = field_value(i, np.arange(n_frames), (xs, ys), 0)  # (T, Nx, Ny)
        v = field_value(i, np.arange(n_frames), (xs, ys), 1)
        flat = lambda a: a.transpose(0, 2, 1).reshape(n_frames, nx * ny)  # index j * Nx + i
        ode_data = np.concatenate([flat(u), flat(v)], 1).T
        sample_u = np.transpose(ode_data[: nx * ny]).reshape(-1, ny, nx)
        sample_v = np.transpose(ode_data[nx * ny :]).reshape(-1, ny, nx)
        data = np.stack((sample_u, sample_v), axis=-1)
        config = {
            "work_dir": "/work",
            "data_dir": "data",
            "upload": False,
            "output_path": str(path),
            "name": "2d_diff-react",
            "sim": {
                "Du": 0.001,
                "Dv": 0.005,
                "k": float(k[i]),
                "t": t_end,
                "tdim": n_frames,
                "x_left": x_left,
                "x_right": x_right,
                "xdim": nx,
                "y_bottom": y_bottom,
                "y_top": y_top,
                "ydim": ny,
                "n": 1,
                "seed": i,
            },
        }
        s = str(i).zfill(4)
        with h5py.File(path, "a") as f:
            f.create_dataset(f"{s}/data", data=data, dtype="float32", compression="lzf")
            f.create_dataset(f"{s}/grid/x", data=x, dtype="float32", compression="lzf")
            f.create_dataset(f"{s}/grid/y", data=y, dtype="float32", compression="lzf")
            f.create_dataset(f"{s}/grid/t", data=t, dtype="float32", compression="lzf")
            f[s].attrs["config"] = _hydra_yaml(config)
    return path


def rdb_radius(seed: int) -> float:
    """The dam radius ``simulator`` draws for a seed: ``default_rng(seed).uniform(0.3, 0.7)``."""
    return float(np.random.default_rng(seed).uniform(0.3, 0.7))


def write_rdb(dir_, n_seeds=3, tsteps=5, nx=6, ny=4, t_end=1.0):
    """``2D_rdb_NA_NA.h5``: one group per seed, ``data (tsteps + 1, X, Y, 1)`` float32 (pyclaw's
    ``q[depth]`` is ``(mx, my)``: x first), ``grid/x``, ``grid/y`` (cell centres of the fixed
    box [-2.5, 2.5]², so different when ``nx != ny``), ``grid/t`` (``linspace(0, T, tsteps +
    1)``), attribute ``config`` with ``sim.dam_radius`` drawn from the seed."""
    path = dir_ / "2D_rdb_NA_NA.h5"
    x = _cell_centres(-2.5, 2.5, nx).astype(np.float64)
    y = _cell_centres(-2.5, 2.5, ny).astype(np.float64)
    for i in range(n_seeds):
        s = str(i).zfill(4)
        config = {
            "work_dir": "/work",
            "data_dir": "data",
            "upload": False,
            "output_path": str(path),
            "name": "2d_rdb",
            "sim": {
                "T_end": t_end,
                "n_time_steps": tsteps,
                "xdim": nx,
                "ydim": ny,
                "gravity": 1.0,
                "dam_radius": rdb_radius(i),
                "inner_height": 2.0,
                "x_left": -2.5,
                "x_right": 2.5,
                "y_bottom": -2.5,
                "y_top": 2.5,
                "seed": i,
            },
        }
        h = field_value(i, np.arange(tsteps + 1), (x.astype(np.float32), y.astype(np.float32)), 0)
        with h5py.File(path, "a") as f:
            f.create_dataset(f"{s}/data", data=np.expand_dims(h, -1), dtype="f")
            f.create_dataset(f"{s}/grid/x", data=x, dtype="f")
            f.create_dataset(f"{s}/grid/y", data=y, dtype="f")
            f.create_dataset(f"{s}/grid/t", data=np.linspace(0.0, t_end, tsteps + 1), dtype="f")
            f[s].attrs["config"] = _hydra_yaml(config)
    return path


def write_ns_incom(dir_, n_batch=2, n_steps=9, frame_int=2, nx=6, ny=4, nu=0.01, dt=5e-5):
    """``ns_incom_inhom_2d_512-0.h5`` as ``h5_for`` creates it and ``_store`` fills it.

    ``velocity (N, T, X, Y, 2)`` (components x, y), ``particles (N, T, X, Y, 1)``,
    ``force (N, X, Y, 2)``, ``t (N, T)``, float32, lzf + shuffle, chunks ``(1, 1, ...)``;
    ``T = (n_steps - 1) // frame_int + 1``; frame ``i`` is stored at ``t = i frame_int DT``.
    Root attributes ``config`` (YAML with ``NU``, ``DT``, ``domain_size``...) and
    ``latestIndex``. No grid is stored; values use cell centres of ``domain_size`` = [1, 1].
    Force of trajectory ``n``: ``n + 1`` everywhere (so its rms is ``n + 1``).
    """
    config = {
        "artefact_dir": "artefacts",
        "dataverse": {"dataset_id": "doi:10.18419/darus-2984"},
        "sim_name": "ns_incom_inhom_2d_512",
        "label": None,
        "domain_size": [1, 1],
        "grid_size": [nx, ny],
        "particle_extrapolation": "BOUNDARY",
        "velocity_extrapolation": "ZERO",
        "NU": nu,
        "force_extrapolation": "ZERO",
        "seed": 0,
        "smoothness": 1.0,
        "scale": 0.4,
        "force_smoothness": 3.0,
        "force_scale": 0.15,
        "n_steps": n_steps,
        "DT": dt,
        "frame_int": frame_int,
        "n_batch": n_batch,
        "save_h5": True,
        "profile": False,
        "upload": False,
        "backend": "jax",
        "device": "GPU",
        "jit": True,
    }
    n_frames = (n_steps - 1) // frame_int + 1
    spec = {
        "velocity": (n_batch, n_frames, nx, ny, 2),
        "particles": (n_batch, n_frames, nx, ny, 1),
        "force": (n_batch, nx, ny, 2),
        "t": (n_batch, n_frames),
    }
    path = dir_ / f"{config['sim_name']}-{config['seed']}.h5"
    # phiflow's cell centres of the box [0, 1]²: (i + 0.5) dx.
    coords = tuple(((np.arange(n) + 0.5) / n).astype(np.float32) for n in (nx, ny))
    with h5py.File(path, "a") as f:
        f.attrs["config"] = _hydra_yaml(config)
        f.attrs["latestIndex"] = -1
        for name, full_shape in spec.items():
            f.require_dataset(
                name,
                full_shape,
                "float32",
                compression="lzf",
                chunks=(1, 1, *full_shape[2:]),
                shuffle=True,
            )
        f["force"][:, ...] = np.arange(1, n_batch + 1, dtype=np.float32)[:, None, None, None]
        for frame in range(n_frames):
            f["particles"][:, frame, ...] = np.stack(
                [field_value(b, frame, coords, 2)[..., None] for b in range(n_batch)]
            )
            f["velocity"][:, frame, ...] = np.stack(
                [
                    np.stack([field_value(b, frame, coords, c) for c in (0, 1)], -1)
                    for b in range(n_batch)
                ]
            )
            f["t"][:, frame] = frame * frame_int * dt
            f.attrs["latestIndex"] = frame
    return path
