"""PDEBench readers on small files written in exactly PDEBench's layouts."""

import h5py
import numpy as np
import pytest

from jaxfm.data.pdebench import PDEBenchFormatError, detect_kind, read_pdebench
from jaxfm.data.windows import WindowSource

RNG = np.random.default_rng(0)


def _seed_group_file(path, n_seeds, t, nx, n_ch):
    """2D_rdb / 2D_diff-react layout: one group per seed with data and grid."""
    data = RNG.normal(size=(n_seeds, t, nx, nx, n_ch)).astype(np.float32)
    with h5py.File(path, "w") as f:
        for s in range(n_seeds):
            g = f.create_group(f"{s:04d}")
            g.create_dataset("data", data=data[s])
            g.create_dataset("grid/x", data=np.linspace(-2.5, 2.5, nx, dtype=np.float32))
            g.create_dataset("grid/y", data=np.linspace(-2.5, 2.5, nx, dtype=np.float32))
            g.create_dataset("grid/t", data=np.linspace(0, 1, t, dtype=np.float32))
    return data


def test_rdb(tmp_path):
    path = tmp_path / "2D_rdb_NA_NA.h5"
    data = _seed_group_file(path, 3, 6, 8, 1)
    ts = read_pdebench(path)
    assert ts.system == "shallow_water" and ts.field_names == ("h",) and ts.bc == ("open", "open")
    np.testing.assert_array_equal(ts.data, data)
    assert ts.dt == pytest.approx(0.2)
    np.testing.assert_array_equal(ts.params["seed"], [0, 1, 2])
    assert read_pdebench(path, max_traj=2).n_traj == 2


def test_diff_react(tmp_path):
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    data = _seed_group_file(path, 2, 5, 8, 2)
    ts = read_pdebench(path)
    assert ts.system == "diffusion_reaction" and ts.field_names == ("activator", "inhibitor")
    np.testing.assert_array_equal(ts.data, data)
    assert ts.bc == ("wall", "wall")


def test_cfd(tmp_path):
    path = tmp_path / "2D_CFD_Turb_M0.1_Eta1e-08_Zeta1e-08_periodic_512_Train.hdf5"
    n, t, nx = 2, 4, 8
    arrays = {
        k: RNG.normal(size=(n, t, nx, nx)).astype(np.float32)
        for k in ("density", "pressure", "Vx", "Vy")
    }
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, nx, dtype=np.float32))
        f.create_dataset("y-coordinate", data=np.linspace(0, 1, nx, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 0.15, t + 1, dtype=np.float32))
    ts = read_pdebench(path)
    assert ts.system == "compressible_m0.1"
    assert ts.field_names == ("velocity_x", "velocity_y", "density", "pressure")
    np.testing.assert_array_equal(ts.data[..., 0], arrays["Vx"])
    np.testing.assert_array_equal(ts.data[..., 3], arrays["pressure"])
    assert ts.dt == pytest.approx(0.0375) and ts.bc == ("periodic", "periodic")
    np.testing.assert_allclose(ts.params["mach"], 0.1)
    np.testing.assert_allclose(ts.params["eta"], 1e-8)
    # The readers' output feeds the same window source as our own data.
    assert WindowSource(ts, 2, 1)[0]["x"].shape == (2, 8, 8, 4)


def test_ns_incom(tmp_path):
    path = tmp_path / "ns_incom_inhom_2d_512-0.h5"
    n, t, nx = 2, 5, 8
    vel = RNG.normal(size=(n, t, nx, nx, 2)).astype(np.float32)
    part = RNG.uniform(size=(n, t, nx, nx, 1)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("velocity", data=vel)
        f.create_dataset("particles", data=part)
        f.create_dataset("force", data=np.ones((n, nx, nx, 2), np.float32))
        f.create_dataset("t", data=np.tile(np.linspace(0, 0.02, t), (n, 1)).astype(np.float32))
    ts = read_pdebench(path)
    assert ts.system == "navier_stokes" and ts.field_names[-1] == "tracer"
    np.testing.assert_array_equal(ts.data[..., :2], vel)
    np.testing.assert_array_equal(ts.data[..., 2], part[..., 0])
    np.testing.assert_allclose(ts.params["force_rms"], 1.0)
    assert ts.dt == pytest.approx(0.005)


def test_1d_tensor(tmp_path):
    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    u = RNG.normal(size=(3, 6, 16)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=u)
        f.create_dataset("x-coordinate", data=np.linspace(0, 1, 16, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 2.0, 7, dtype=np.float32))
    ts = read_pdebench(path)
    assert ts.system == "burgers" and ts.data.shape == (3, 6, 16, 1)
    np.testing.assert_array_equal(ts.data[..., 0], u)


def test_missing_key_wrong_shape_and_nan(tmp_path):
    path = tmp_path / "2D_CFD_Rand_M1.0_Eta0.1_Zeta0.1_periodic_128_Train.hdf5"
    with h5py.File(path, "w") as f:
        for k in ("density", "pressure", "Vx"):
            f.create_dataset(k, data=np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(PDEBenchFormatError, match=r"periodic_128_Train\.hdf5: missing key 'Vy'"):
        read_pdebench(path)
    bad = tmp_path / "2D_rdb_NA_NA.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("0000/data", data=np.zeros((3, 4, 4, 2), np.float32))
    with pytest.raises(PDEBenchFormatError, match=r"0000/data has shape \(3, 4, 4, 2\)"):
        read_pdebench(bad)
    nan = tmp_path / "2D_diff-react_NA_NA.h5"
    data = _seed_group_file(nan, 3, 4, 4, 2)
    with h5py.File(nan, "a") as f:
        d = data[2].copy()
        d[1, 0, 0, 0] = np.nan
        f["0002/data"][...] = d
    with pytest.raises(ValueError, match="trajectory 2"):
        read_pdebench(nan)
    with pytest.raises(PDEBenchFormatError, match="cannot tell"):
        detect_kind(tmp_path / "mystery.h5")
