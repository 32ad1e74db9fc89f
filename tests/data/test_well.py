"""The Well layout: round trip, layout keys, atomic writes, malformed files, NaN reporting;
The Well's checker rules on every built-in system; the reader on files laid out as The Well's."""

import dataclasses
import importlib.util
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from jaxfm.data.sim.registry import SIMULATORS, simulate
from jaxfm.data.well import (
    WellFile,
    WellFormatError,
    open_well_split,
    read_well,
    well_split_files,
    write_dataset,
    write_well,
)
from tests.data.fixtures import random_set
from tests.data.well_checker import stats_violations, well_violations
from tests.data.well_files import (
    MINIATURES,
    write_acoustic_scattering_maze,
    write_rayleigh_benard,
    write_shear_flow,
    write_turbulent_radiative_layer_2d,
)


def test_round_trip_preserves_everything(tmp_path):
    ts = random_set(fields=("density", "velocity_x", "velocity_y", "pressure"))
    path = write_well(ts, tmp_path / "a.hdf5", settings={"n_traj": 5})
    back = read_well(path)
    assert back.field_names == ts.field_names and back.system == ts.system
    np.testing.assert_array_equal(back.data, ts.data)
    np.testing.assert_allclose(back.params["nu"], ts.params["nu"], rtol=1e-6)  # stored float32
    assert back.dt == pytest.approx(ts.dt) and back.bc == ts.bc
    for a, b in zip(back.coords, ts.coords):
        np.testing.assert_allclose(a, b)
    assert back.constants == ts.constants
    assert WellFile(path).settings == {"n_traj": 5}


def test_layout_matches_the_well(tmp_path):
    ts = random_set(fields=("velocity_x", "velocity_y", "tracer"))
    path = write_well(ts, tmp_path / "a.hdf5")
    with h5py.File(path) as f:
        for key in (
            "dataset_name",
            "grid_type",
            "n_spatial_dims",
            "n_trajectories",
            "simulation_parameters",
        ):
            assert key in f.attrs
        assert f.attrs["n_trajectories"] == 5 and f.attrs["n_spatial_dims"] == 2
        assert list(f["t0_fields"].attrs["field_names"]) == ["tracer"]
        assert list(f["t1_fields"].attrs["field_names"]) == ["velocity"]
        assert f["t0_fields/tracer"].shape == (5, 8, 6, 5)
        assert f["t1_fields/velocity"].shape == (5, 8, 6, 5, 2)
        np.testing.assert_array_equal(f["t1_fields/velocity"][..., 1], ts.data[..., 1])
        assert f["dimensions/time"].shape == (8,)
        assert f["boundary_conditions/x_periodic"].attrs["bc_type"] == "PERIODIC"
        assert list(f["dimensions"].attrs["spatial_dims"]) == ["x", "y"]
        assert f["dimensions/time"].attrs["time_varying"]
        assert "t2_fields" in f and "scalars/nu" in f
        np.testing.assert_allclose(f.attrs["nu"], ts.params["nu"], rtol=1e-6)
    assert well_violations(path) == []


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    ts = random_set()
    target = tmp_path / "a.hdf5"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("jaxfm.data.well._field_attrs", boom)
    with pytest.raises(RuntimeError):
        write_well(ts, target)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


def test_missing_key_names_file_and_key(tmp_path):
    path = write_well(random_set(), tmp_path / "a.hdf5")
    with h5py.File(path, "a") as f:
        del f["dimensions/time"]
    with pytest.raises(WellFormatError, match=r"a\.hdf5: missing key 'dimensions/time'"):
        read_well(path)


def test_wrong_shape_is_reported(tmp_path):
    path = write_well(random_set(), tmp_path / "a.hdf5")
    with h5py.File(path, "a") as f:
        f.attrs["n_trajectories"] = 7
    with pytest.raises(WellFormatError, match=r"t0_fields/tracer has shape \(5, 8, 6, 5\)"):
        read_well(path)


def test_nan_reported_with_trajectory_index(tmp_path):
    ts = random_set()
    ts.data[3, 5, 2, 2, 1] = np.nan
    path = write_well(ts, tmp_path / "a.hdf5")
    with pytest.raises(ValueError, match="trajectory 3 .first at frame 5"):
        read_well(path)
    with pytest.raises(ValueError, match="trajectory 3"):
        WellFile(path).check_finite()


def test_dataset_splits_and_stats(tmp_path):
    ts = random_set(n_traj=10)
    paths = write_dataset(ts, tmp_path)
    n = {s: read_well(paths[s]).n_traj for s in ("train", "valid", "test")}
    assert n == {"train": 8, "valid": 1, "test": 1}
    np.testing.assert_array_equal(read_well(paths["valid"]).data, ts.data[8:9])
    assert paths["stats"].name == "stats.yaml"
    assert paths["train"] == tmp_path / "navier_stokes/data/train/navier_stokes.hdf5"


def test_lazy_reader_pickles_without_handle(tmp_path):
    import pickle

    ts = random_set()
    wf = WellFile(write_well(ts, tmp_path / "a.hdf5"))
    np.testing.assert_array_equal(wf.read(2, 1, 7, 2), ts.data[2, 1:7:2])
    clone = pickle.loads(pickle.dumps(wf))
    np.testing.assert_array_equal(clone.read(4), ts.data[4])
    assert repr(clone) == repr(wf)


def test_reads_a_file_written_by_the_wells_own_conventions(tmp_path):
    # No jaxfm attributes; upper-case bc_type; a time-constant field; constants as root attrs.
    rng = np.random.default_rng(0)
    b, t, nx, ny = 2, 4, 6, 5
    rho = rng.normal(size=(b, t, nx, ny)).astype(np.float32)
    vel = rng.normal(size=(b, t, nx, ny, 2)).astype(np.float32)
    mask = rng.normal(size=(b, nx, ny)).astype(np.float32)
    path = tmp_path / "well_native.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs.update(
            dataset_name="shear_flow",
            grid_type="cartesian",
            n_spatial_dims=2,
            n_trajectories=b,
            simulation_parameters=["Reynolds"],
            Reynolds=1e4,
        )
        f.create_group("dimensions").attrs["spatial_dims"] = ["x", "y"]
        f["dimensions/time"] = np.arange(t, dtype=np.float32) * 0.5
        f["dimensions/x"] = np.linspace(0, 1, nx, dtype=np.float32)
        f["dimensions/y"] = np.linspace(0, 1, ny, dtype=np.float32)
        g = f.create_group("boundary_conditions/x_periodic")
        g.attrs.update(bc_type="PERIODIC", associated_dims=["x"])
        g = f.create_group("boundary_conditions/y_wall")
        g.attrs.update(bc_type="WALL", associated_dims=["y"])
        f.create_group("scalars").attrs["field_names"] = []
        t0 = f.create_group("t0_fields")
        t0.attrs["field_names"] = ["density", "obstacle"]
        t0["density"] = rho
        t0["obstacle"] = mask
        t0["obstacle"].attrs.update(sample_varying=True, time_varying=False)
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        t1["velocity"] = vel
        f.create_group("t2_fields").attrs["field_names"] = []
    ts = read_well(path)
    # The time-constant obstacle is not a predicted channel (see WellFile.read_constants).
    assert ts.field_names == ("density", "velocity_x", "velocity_y")
    assert ts.bc == ("periodic", "wall") and ts.dt == pytest.approx(0.5)
    np.testing.assert_array_equal(ts.data[..., 0], rho)
    np.testing.assert_array_equal(ts.data[..., 2], vel[..., 1])
    np.testing.assert_allclose(ts.params["Reynolds"], 1e4)
    wf = WellFile(path)
    assert wf.constant_field_names == ("obstacle",)
    np.testing.assert_array_equal(wf.read_constants(1)[..., 0], mask[1])
    both = WellFile(path, include_constants=True)
    assert both.field_names == ("density", "velocity_x", "velocity_y", "obstacle")
    np.testing.assert_array_equal(both.read(1, 1, 4, 2)[..., 3], np.stack([mask[1]] * 2))
    np.testing.assert_array_equal(read_well(path, include_constants=True).data[..., 0], rho)


def test_tensor_fields_round_trip_as_t2_fields(tmp_path):
    ts = random_set(fields=("c", "D_xx", "D_xy", "D_yx", "D_yy"))
    path = write_well(ts, tmp_path / "t2.hdf5")
    with h5py.File(path) as f:
        assert list(f["t2_fields"].attrs["field_names"]) == ["D"]
        assert f["t2_fields/D"].shape == (5, 8, 6, 5, 2, 2)
        np.testing.assert_array_equal(f["t2_fields/D"][..., 1, 0], ts.data[..., 3])
        assert not f["t2_fields/D"].attrs["symmetric"]
    assert well_violations(path) == []
    back = read_well(path)
    assert back.field_names == ts.field_names
    np.testing.assert_array_equal(back.data, ts.data)


def test_reads_files_of_older_jaxfm(tmp_path):
    # before The Well's checkers were followed: <axis>_boundary groups, lower-case bc_type,
    # parameters only in /scalars, no time_varying on dimensions/time
    ts = random_set()
    path = write_well(ts, tmp_path / "old.hdf5")
    with h5py.File(path, "a") as f:
        bcs = f["boundary_conditions"]
        for axis in ("x", "y"):
            bcs.move(f"{axis}_periodic", f"{axis}_boundary")
            bcs[f"{axis}_boundary"].attrs["bc_type"] = "periodic"
        del f.attrs["nu"], f["dimensions/time"].attrs["time_varying"]
    back = read_well(path)
    assert back.bc == ts.bc and back.field_names == ts.field_names
    np.testing.assert_array_equal(back.data, ts.data)
    np.testing.assert_allclose(back.params["nu"], ts.params["nu"], rtol=1e-6)


def test_root_parameter_of_the_wrong_length_is_reported(tmp_path):
    m = write_shear_flow(tmp_path / "a.hdf5", np.random.default_rng(0))
    with h5py.File(m.path, "a") as f:
        del f["scalars/Schmidt"]
        f["scalars"].attrs["field_names"] = ["Rayleigh"]
        f.attrs["Schmidt"] = [1.0, 2.0, 3.0]
    with pytest.raises(WellFormatError, match="root attribute 'Schmidt' has 3 values"):
        WellFile(m.path)


def test_parameter_names_may_not_clash_with_root_attributes(tmp_path):
    ts = random_set()
    bad = dataclasses.replace(ts, params={"grid_type": np.ones(ts.n_traj)})
    with pytest.raises(ValueError, match=r"parameter names \['grid_type'\] clash"):
        write_well(bad, tmp_path / "a.hdf5")


def test_one_dimensional_round_trip(tmp_path):
    ts = random_set(shape=(16,), system="burgers", fields=("velocity_x",))
    back = read_well(write_well(ts, tmp_path / "b.hdf5"))
    assert back.field_names == ("velocity_x",) and back.spatial_shape == (16,)
    np.testing.assert_array_equal(back.data, ts.data)
    with h5py.File(tmp_path / "b.hdf5") as f:
        assert f["t1_fields/velocity"].shape == (5, 8, 16, 1)


# ----------------------------------------------------------------------------- The Well's rules


@pytest.mark.parametrize("name", list(SIMULATORS))
def test_every_builtin_system_passes_the_wells_checkers(name, tmp_path):
    # 16 cells: on 8 the dam of shallow_water can fall between cell centres, leaving still
    # water, whose frames The Well's data checker rightly reports as constant.
    ts = simulate(name, 3, 0, resolution=16, n_steps=3)
    paths = write_dataset(ts, tmp_path, settings={"system": name})
    stats = yaml.safe_load(paths["stats"].read_text())
    for split in ("train", "valid", "test"):
        assert well_violations(paths[split]) == [], split
        assert stats_violations(stats, paths[split]) == [], split
    back = read_well(paths["train"])
    assert back.field_names == ts.field_names and back.bc == ts.bc


@pytest.mark.torch
def test_the_wells_own_checker_and_dataset_read_our_files(tmp_path):
    pytest.importorskip("torch", reason="The Well's reader needs PyTorch")
    the_well = pytest.importorskip("the_well", reason="the_well is not installed")
    from the_well.data import WellDataset
    from the_well.data.normalization import RMSNormalization, ZScoreNormalization

    ts = random_set(fields=("density", "velocity_x", "velocity_y", "pressure"), n_traj=10)
    paths = write_dataset(ts, tmp_path)
    checker = Path(the_well.__file__).parents[1] / "scripts" / "check_thewell_formatting.py"
    if checker.is_file():  # a source checkout ships the script; a wheel does not
        spec = importlib.util.spec_from_file_location("check_thewell_formatting", checker)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # its naming rules are warnings
            for split in ("train", "valid", "test"):
                module.check_hdf5_format(str(paths[split]))
    for norm in (ZScoreNormalization, RMSNormalization):
        ds = WellDataset(
            path=str(tmp_path / ts.system),
            well_split_name="train",
            use_normalization=True,
            normalization_type=norm,
        )
        sample = ds[0]
        assert sample["input_fields"].shape[-1] == 4
    raw = WellDataset(path=str(tmp_path / ts.system), well_split_name="train")[0]
    well_order = [0, 3, 1, 2]  # The Well's channels: t0 (density, pressure), then t1 velocity
    np.testing.assert_array_equal(raw["input_fields"][0].numpy(), ts.data[0, 0][..., well_order])


# ----------------------------------------------------------------------------- files of The Well


@pytest.fixture(params=list(MINIATURES))
def miniature(request, tmp_path):
    return MINIATURES[request.param](tmp_path / f"{request.param}.hdf5", np.random.default_rng(3))


def test_miniatures_follow_the_wells_rules(miniature):
    assert well_violations(miniature.path) == []


def test_reader_is_channel_exact_on_the_wells_files(miniature):
    wf = WellFile(miniature.path)
    assert wf.field_names == tuple(miniature.variable)
    b, t = next(iter(miniature.variable.values())).shape[:2]
    assert (wf.n_traj, wf.n_steps) == (b, t)
    for traj in range(b):
        frames = wf.read(traj)
        for c, name in enumerate(wf.field_names):
            np.testing.assert_array_equal(frames[..., c], miniature.variable[name][traj])
        np.testing.assert_array_equal(
            wf.read(traj, 1, None, 2)[..., -1], miniature.variable[name][traj, 1::2]
        )
    ts = wf.load()
    for c, name in enumerate(ts.field_names):
        np.testing.assert_array_equal(ts.data[..., c], miniature.variable[name])
    for k, v in miniature.params.items():
        np.testing.assert_allclose(ts.params[k], np.full(b, v), rtol=1e-6)
    np.testing.assert_allclose(wf.times, miniature.time, rtol=1e-6)
    np.testing.assert_allclose(wf.dts, np.diff(miniature.time, axis=1)[:, 0], rtol=1e-5)
    assert wf.bc == miniature.bc and wf.bc_faces == miniature.bc_faces


def test_constant_fields_are_kept_out_of_the_predicted_channels(tmp_path):
    m = write_acoustic_scattering_maze(tmp_path / "maze.hdf5", np.random.default_rng(0))
    wf = WellFile(m.path)
    assert wf.field_names == ("pressure", "velocity_x", "velocity_y")
    assert wf.constant_field_names == ("density", "speed_of_sound")
    for traj in range(wf.n_traj):
        c = wf.read_constants(traj)
        assert c.shape == (*wf.spatial_shape, 2)
        np.testing.assert_array_equal(c[..., 0], m.constant["density"][traj])
        np.testing.assert_array_equal(c[..., 1], m.constant["speed_of_sound"][traj])
    both = WellFile(m.path, include_constants=True)
    assert both.field_names == (*wf.field_names, "density", "speed_of_sound")
    frames = both.read(1, 0, 3)
    np.testing.assert_array_equal(frames[..., :3], wf.read(1, 0, 3))
    np.testing.assert_array_equal(frames[..., 4], np.stack([m.constant["speed_of_sound"][1]] * 3))


def test_time_varying_scalars_are_read_per_frame(tmp_path):
    rng = np.random.default_rng(0)
    trl = write_turbulent_radiative_layer_2d(tmp_path / "trl.hdf5", rng)
    wf = WellFile(trl.path)
    assert wf.scalar_names == ("cooling_rate",) and "cooling_rate" not in wf.params
    np.testing.assert_allclose(wf.params["tcool"], 0.1, rtol=1e-6)
    got = wf.read_scalars(1, 1, 5, 2)
    np.testing.assert_array_equal(got["cooling_rate"], trl.scalars["cooling_rate"][1, 1:5:2])
    maze = write_acoustic_scattering_maze(tmp_path / "maze.hdf5", rng)  # (T,), all trajectories
    got = WellFile(maze.path).read_scalars(0)
    np.testing.assert_array_equal(got["source_amplitude"], maze.scalars["source_amplitude"][0])


def test_spherical_grid_is_refused_in_one_line(tmp_path):
    m = write_shear_flow(tmp_path / "planet.hdf5", np.random.default_rng(0))
    with h5py.File(m.path, "a") as f:
        f.attrs["grid_type"] = "spherical"
    with pytest.raises(WellFormatError, match=r"planet\.hdf5: grid_type 'spherical'") as e:
        WellFile(m.path)
    assert "\n" not in str(e.value)


def test_per_trajectory_time_gives_a_dt_per_trajectory(tmp_path):
    m = write_turbulent_radiative_layer_2d(tmp_path / "trl.hdf5", np.random.default_rng(0))
    with h5py.File(m.path, "a") as f:
        time = f["dimensions/time"][...]
        time[1] = time[1, 0] + 2 * (time[1] - time[1, 0])  # trajectory 1 steps twice as far
        f["dimensions/time"][...] = time
    wf = WellFile(m.path)
    np.testing.assert_allclose(wf.dts, [0.1, 0.2], rtol=1e-5)
    with pytest.raises(WellFormatError, match=r"trl\.hdf5: trajectories have different time"):
        _ = wf.dt
    with pytest.raises(WellFormatError, match="different time steps"):
        wf.load()
    np.testing.assert_array_equal(wf.read(1)[..., 0], m.variable["density"][1])


def test_non_uniform_time_steps_are_refused(tmp_path):
    m = write_shear_flow(tmp_path / "a.hdf5", np.random.default_rng(0))
    with h5py.File(m.path, "a") as f:
        f["dimensions/time"][...] = [0.0, 0.25, 0.5, 1.0, 1.25]
    with pytest.raises(WellFormatError, match=r"a\.hdf5: non-uniform time steps .*frame 2"):
        WellFile(m.path)


def test_each_face_of_an_axis_keeps_its_boundary(tmp_path):
    m = write_rayleigh_benard(tmp_path / "rb.hdf5", np.random.default_rng(0))
    wf = WellFile(m.path)
    assert wf.bc_faces == (("periodic", "periodic"), ("wall", "open"))
    assert wf.bc == ("periodic", "wall")  # a mixed axis is not periodic; a wall face wins
    with h5py.File(m.path, "a") as f:  # a periodic face opposite an open one: not periodic
        del f["boundary_conditions/y_wall"]
        g = f["boundary_conditions"].create_group("y_periodic")
        g.attrs.update(bc_type="PERIODIC", associated_dims=["y"], associated_fields=[])
        g["mask"] = np.array([True, False, False, False])
    wf = WellFile(m.path)
    assert wf.bc_faces[1] == ("periodic", "open") and wf.bc[1] == "open"


def test_split_files_in_a_stable_order(tmp_path):
    ts = random_set(n_traj=10)
    write_dataset(ts, tmp_path)
    root = tmp_path / ts.system
    split = root / "data" / "train"
    for name in ("b_part.hdf5", "a_part.h5"):
        write_well(ts.subset(slice(0, 2)), split / name)
    expect = [split / "a_part.h5", split / "b_part.hdf5", split / "navier_stokes.hdf5"]
    assert well_split_files(root, "train") == expect
    assert well_split_files(split, "train") == expect  # the split folder itself
    files = open_well_split(root, "train")
    assert [f.path for f in files] == expect and [f.n_traj for f in files] == [2, 2, 8]
    with pytest.raises(FileNotFoundError, match=r"no split 'dev' .*have: test, train, valid"):
        well_split_files(root, "dev")
    with pytest.raises(FileNotFoundError, match=r"no \*\.hdf5 or \*\.h5 files"):
        (root / "data" / "empty").mkdir()
        well_split_files(root, "empty")
    with pytest.raises(ValueError, match=r"train is the split folder 'train', not 'valid'"):
        well_split_files(split, "valid")
