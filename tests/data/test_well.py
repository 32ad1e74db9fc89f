"""The Well layout: round trip, layout keys, atomic writes, malformed files, NaN reporting."""

import h5py
import numpy as np
import pytest

from jaxfm.data.well import WellFile, WellFormatError, read_well, write_dataset, write_well
from tests.data.fixtures import random_set


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
        assert f["boundary_conditions/x_boundary"].attrs["bc_type"] == "periodic"
        assert "t2_fields" in f and "scalars/nu" in f


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
