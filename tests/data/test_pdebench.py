"""PDEBench readers on small files written as PDEBench's generators write them.

The writers (:mod:`tests.data.pdebench_files`) store a known function of trajectory, frame,
channel and position, so each test checks every value, channel and coordinate exactly.
"""

import math
import pickle
import shutil
import tracemalloc

import h5py
import numpy as np
import pytest

from jaxfm.data.pdebench import PDEBenchFile, PDEBenchFormatError, detect_kind, read_pdebench
from jaxfm.data.trajectories import TrajectorySet
from jaxfm.data.windows import WindowSource
from tests.data import pdebench_files as pf


def expected(n_traj, n_steps, coords, channels):
    """``(N, T, *spatial, C)`` as the writers store it, in jaxfm's axis order (x first)."""
    t = np.arange(n_steps)
    return np.stack(
        [np.stack([pf.field_value(i, t, coords, c) for c in channels], -1) for i in range(n_traj)]
    )


def check_values(ts, coords, channels):
    for got, want in zip(ts.coords, coords):
        np.testing.assert_array_equal(got, np.asarray(want, np.float32))
    np.testing.assert_array_equal(ts.data, expected(ts.n_traj, ts.n_steps, ts.coords, channels))


def test_advection_reads_beta_and_drops_the_extra_time(tmp_path):
    path = pf.write_advection(tmp_path, n=3, n_frames=6, nx=16, beta=0.4)
    ts = read_pdebench(path)
    assert (ts.system, ts.field_names, ts.bc, ts.axis_names) == (
        "advection",
        ("u",),
        ("periodic",),
        ("x",),
    )
    assert ts.data.shape == (3, 6, 16, 1)  # t-coordinate has 7 entries
    with h5py.File(path) as f:
        check_values(ts, [f["x-coordinate"][:]], [0])
    assert ts.dt == pytest.approx(0.01)
    np.testing.assert_allclose(ts.params["speed"], [0.4] * 3)
    with h5py.File(path, "a") as f:
        f.attrs["beta"] = 2.5  # the attribute wins over the name
    np.testing.assert_allclose(read_pdebench(path).params["speed"], 2.5)
    with h5py.File(path, "a") as f:
        del f.attrs["beta"]  # then the name is the fallback
    np.testing.assert_allclose(read_pdebench(path).params["speed"], 0.4)


def test_burgers_nu_is_the_coefficient_of_u_xx(tmp_path):
    # PDEBench's Burgers solver uses (Nu / pi) u_xx; jaxfm's burgers uses nu u_xx.
    path = pf.write_burgers(tmp_path, nu=0.001)
    ts = read_pdebench(path)
    assert ts.system == "burgers" and ts.field_names == ("velocity_x",)
    with h5py.File(path) as f:
        check_values(ts, [f["x-coordinate"][:]], [0])
    np.testing.assert_allclose(ts.params["nu"], 0.001 / math.pi)


C = pf.CFD_CHANNEL


def test_cfd_1d(tmp_path):
    path = pf.write_cfd(tmp_path / pf.cfd_name(1), (16,), n=2, n_frames=4, eta=0.1, zeta=0.01)
    ts = read_pdebench(path)
    assert ts.system == "compressible_1d" and ts.bc == ("periodic",)
    assert ts.field_names == ("velocity_x", "density", "pressure")
    with h5py.File(path) as f:
        check_values(ts, [f["x-coordinate"][:]], [C["Vx"], C["density"], C["pressure"]])
    assert ts.dt == pytest.approx(0.05)
    np.testing.assert_allclose(ts.params["eta"], 0.1)
    np.testing.assert_allclose(ts.params["zeta"], 0.01)
    assert "mach" not in ts.params
    shock = pf.write_cfd(tmp_path / pf.cfd_name(1, mode="Shock", bd="trans"), (8,))
    assert read_pdebench(shock).bc == ("open",)  # transmissive


@pytest.mark.parametrize(
    "mode, mach, eta, system",
    [("Rand", 0.1, 0.01, "compressible_m0.1"), ("Turb", 1.0, 1e-08, "compressible_m1")],
)
def test_cfd_2d_non_square(tmp_path, mode, mach, eta, system):
    name = pf.cfd_name(2, mode=mode, mach=mach, eta=eta, zeta=eta, res="512")
    path = pf.write_cfd(tmp_path / name, (6, 4), n=2, n_frames=5, eta=eta, zeta=eta, mach=mach)
    ts = read_pdebench(path)
    assert ts.system == system and ts.spatial_shape == (6, 4)
    assert ts.field_names == ("velocity_x", "velocity_y", "density", "pressure")
    with h5py.File(path) as f:
        coords = [f["x-coordinate"][:], f["y-coordinate"][:]]
    check_values(ts, coords, [C["Vx"], C["Vy"], C["density"], C["pressure"]])
    np.testing.assert_allclose(ts.params["mach"], mach)
    np.testing.assert_allclose(ts.params["eta"], eta)
    np.testing.assert_allclose(ts.params["zeta"], eta)
    # A name without the numbers: the attributes Data_Merge writes are enough.
    bare = shutil.copy(path, tmp_path / "2D_CFD_periodic_Train.hdf5")
    ts = read_pdebench(bare)
    assert ts.system == system
    np.testing.assert_allclose(ts.params["eta"], eta)
    # Without the attributes, the numbers of the released file names are the fallback.
    with h5py.File(path, "a") as f:
        for k in ("eta", "zeta", "M"):
            del f.attrs[k]
    ts = read_pdebench(path)
    assert ts.system == system
    np.testing.assert_allclose([ts.params[k][0] for k in ("mach", "eta", "zeta")], [mach, eta, eta])


def test_cfd_3d(tmp_path):
    path = pf.write_cfd(tmp_path / pf.cfd_name(3, mach=1.0), (4, 3, 2), n=2, n_frames=3, mach=1.0)
    ts = read_pdebench(path)
    assert ts.system == "compressible_3d_m1" and ts.axis_names == ("x", "y", "z")
    assert ts.field_names == ("velocity_x", "velocity_y", "velocity_z", "density", "pressure")
    with h5py.File(path) as f:
        coords = [f[f"{a}-coordinate"][:] for a in "xyz"]
    check_values(ts, coords, [C["Vx"], C["Vy"], C["Vz"], C["density"], C["pressure"]])
    assert ts.bc == ("periodic",) * 3


def test_diff_react_is_stored_y_first(tmp_path):
    path = pf.write_diff_react(tmp_path, n_seeds=3, n_frames=5, nx=6, ny=4, k=[0.1, 0.2, 0.3])
    ts = read_pdebench(path)
    assert ts.system == "diffusion_reaction" and ts.field_names == ("activator", "inhibitor")
    assert ts.spatial_shape == (6, 4) and ts.bc == ("wall", "wall")
    with h5py.File(path) as f:
        coords = [f["0000/grid/x"][:], f["0000/grid/y"][:]]
        assert f["0000/data"].shape == (5, 4, 6, 2)  # (T, Ny, Nx, 2) upstream
    check_values(ts, coords, [0, 1])
    assert ts.dt == pytest.approx(5.0 / 4)
    np.testing.assert_allclose(ts.params["k"], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(ts.params["du"], 1e-3)
    np.testing.assert_allclose(ts.params["dv"], 5e-3)
    np.testing.assert_array_equal(ts.params["seed"], [0, 1, 2])
    assert read_pdebench(path, max_traj=2).n_traj == 2


def test_rdb_non_square(tmp_path):
    path = pf.write_rdb(tmp_path, n_seeds=3, tsteps=5, nx=6, ny=4)
    ts = read_pdebench(path)
    assert ts.system == "shallow_water" and ts.field_names == ("h",) and ts.bc == ("open", "open")
    assert ts.data.shape == (3, 6, 6, 4, 1)  # tsteps + 1 frames
    with h5py.File(path) as f:
        check_values(ts, [f["0000/grid/x"][:], f["0000/grid/y"][:]], [0])
    assert ts.dt == pytest.approx(0.2)
    np.testing.assert_allclose(ts.params["radius"], [pf.rdb_radius(s) for s in range(3)])
    np.testing.assert_array_equal(ts.params["seed"], [0, 1, 2])


def test_ns_incom(tmp_path):
    path = pf.write_ns_incom(tmp_path, n_batch=2, n_steps=9, frame_int=2, nx=6, ny=4, nu=0.02)
    ts = read_pdebench(path)
    assert ts.system == "navier_stokes" and ts.bc == ("wall", "wall")
    assert ts.field_names == ("velocity_x", "velocity_y", "tracer")
    assert ts.data.shape == (2, 5, 6, 4, 3)
    centres = [(np.arange(n) + 0.5) / n for n in (6, 4)]
    check_values(ts, centres, [0, 1, 2])
    assert ts.dt == pytest.approx(2 * 5e-5)
    np.testing.assert_allclose(ts.params["nu"], 0.02)
    np.testing.assert_allclose(ts.params["force_rms"], [1.0, 2.0])


WRITERS = {
    "advection": lambda d: pf.write_advection(d),
    "burgers": lambda d: pf.write_burgers(d),
    "cfd_1d": lambda d: pf.write_cfd(d / pf.cfd_name(1), (8,)),
    "cfd_2d": lambda d: pf.write_cfd(d / pf.cfd_name(2), (6, 4)),
    "diff_react": lambda d: pf.write_diff_react(d),
    "rdb": lambda d: pf.write_rdb(d),
    "ns_incom": lambda d: pf.write_ns_incom(d),
}


@pytest.mark.parametrize("which", sorted(set(WRITERS) - {"advection", "burgers"}))
def test_layout_from_content_when_the_name_says_nothing(tmp_path, which):
    path = WRITERS[which](tmp_path)
    by_name = PDEBenchFile(path)
    anonymous = PDEBenchFile(shutil.copy(path, tmp_path / "data.h5"))
    assert detect_kind(anonymous.path) == by_name.kind
    assert (anonymous.system, anonymous.field_names) == (by_name.system, by_name.field_names)
    np.testing.assert_array_equal(anonymous.read(1), by_name.read(1))


def test_1d_equation_from_the_attributes(tmp_path):
    adv = PDEBenchFile(shutil.copy(pf.write_advection(tmp_path), tmp_path / "a.hdf5"))
    bur = PDEBenchFile(shutil.copy(pf.write_burgers(tmp_path), tmp_path / "b.hdf5"))
    assert (adv.system, bur.system) == ("advection", "burgers")
    with h5py.File(tmp_path / "a.hdf5", "a") as f:
        del f.attrs["beta"]
    with pytest.raises(PDEBenchFormatError, match=r"a\.hdf5: .*advection or Burgers"):
        PDEBenchFile(tmp_path / "a.hdf5")
    # Data_Merge.transform's 1-D reaction-diffusion: Nu as Burgers, plus rho.
    reac = shutil.copy(tmp_path / "b.hdf5", tmp_path / "ReacDiff_Nu0.5_Rho1.0.hdf5")
    with h5py.File(reac, "a") as f:
        f.attrs["rho"] = 1.0
    with pytest.raises(PDEBenchFormatError, match=r"Rho1\.0\.hdf5: 1-D reaction-diffusion"):
        PDEBenchFile(reac)


def test_unknown_layout_names_file_and_keys(tmp_path):
    path = tmp_path / "mystery.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("foo", data=np.zeros(3))
        f.create_group("bar")
    with pytest.raises(PDEBenchFormatError, match=r"mystery\.h5: .*keys \['bar', 'foo'\]") as e:
        PDEBenchFile(path)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown PDEBench kind 'nope'"):
        PDEBenchFile(path, kind="nope")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(PDEBenchFormatError, match=r"junk\.h5: not an HDF5 file"):
        PDEBenchFile(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        PDEBenchFile(tmp_path / "absent.h5")


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
    nan = pf.write_diff_react(tmp_path, n_seeds=3, n_frames=4)
    with h5py.File(nan, "a") as f:
        f["0002/data"][1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="trajectory 2"):
        read_pdebench(nan)
    with pytest.raises(ValueError, match=r"trajectory 2 \(first at frame 1\)"):
        PDEBenchFile(nan).check_finite()
    read_pdebench(nan, max_traj=2)  # the first two are finite
    with pytest.raises(IndexError, match="trajectory 3 out of range"):
        PDEBenchFile(nan).read(3)


def test_lazy_read_matches_load(tmp_path):
    path = pf.write_cfd(tmp_path / pf.cfd_name(2), (6, 4), n=3, n_frames=9)
    lazy = PDEBenchFile(path)
    ts = lazy.load()
    assert isinstance(ts, TrajectorySet)
    np.testing.assert_array_equal(lazy.read(1), ts.data[1])
    for traj, start, stop, stride in [(2, 3, None, 1), (0, 1, 8, 3), (2, 4, None, 2), (1, 5, 5, 1)]:
        want = ts.data[traj, start:stop:stride]
        got = lazy.read(traj, start, stop, stride)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    meta = ("system", "field_names", "n_traj", "n_steps", "spatial_shape", "n_spatial_dims")
    assert [getattr(lazy, k) for k in meta] == [getattr(ts, k) for k in meta]
    assert lazy.axis_names == ts.axis_names and lazy.bc == ts.bc and lazy.dt == ts.dt
    assert lazy.load(max_traj=2).n_traj == 2
    lazy.close()
    np.testing.assert_array_equal(lazy.read(0), ts.data[0])  # reopens


def test_window_source_over_the_lazy_file_matches_memory_and_pickles(tmp_path):
    path = pf.write_diff_react(tmp_path, n_seeds=3, n_frames=7, nx=6, ny=4)
    lazy = WindowSource(PDEBenchFile(path), n_steps_input=2, n_steps_output=2, stride=2)
    mem = WindowSource(read_pdebench(path), n_steps_input=2, n_steps_output=2, stride=2)
    assert len(lazy) == len(mem) == 3 * (7 - 6)
    for i in range(len(mem)):
        for key in ("x", "y", "field_ids", "system", "traj", "start"):
            np.testing.assert_array_equal(lazy[i][key], mem[i][key])
    assert lazy.data._h5 is not None  # opened by the reads above
    clone = pickle.loads(pickle.dumps(lazy))
    assert clone.data._h5 is None
    np.testing.assert_array_equal(clone[2]["y"], mem[2]["y"])


def test_reading_one_window_does_not_read_the_file(tmp_path):
    # 4 fields x 16 trajectories x 8 frames x 96 x 112 float32 = 22 MiB.
    path = pf.write_cfd(tmp_path / pf.cfd_name(2), (96, 112), n=16, n_frames=8)
    with h5py.File(path) as f:
        size = sum(f[k].nbytes for k in ("density", "pressure", "Vx", "Vy"))
    window = 3 * 4 * 96 * 112 * 4
    tracemalloc.start()
    try:
        src = WindowSource(PDEBenchFile(path), 2, 1, check_finite=False)
        x = src[5 * src.per_traj + 2]["x"]
        lazy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read_pdebench(path, check_finite=False)
        eager_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (2, 96, 112, 4)
    assert eager_peak > size  # the measure sees a full read
    assert lazy_peak < 4 * window < size / 10
