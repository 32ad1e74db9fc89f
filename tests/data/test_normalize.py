"""Normalisation: statistics against float64 NumPy, stored once, applied identically to splits."""

import numpy as np
import pytest

from jaxfm.data.normalize import FieldStats, Normalizer
from jaxfm.data.well import WellFile, write_dataset
from jaxfm.data.windows import WindowSource
from tests.data.fixtures import random_set


def test_statistics_match_numpy():
    ts = random_set()
    st = FieldStats.from_trajectories(ts)
    d = ts.data.astype(np.float64)
    for i, n in enumerate(ts.field_names):
        assert st.stats["mean"][n] == pytest.approx(d[..., i].mean(), rel=1e-12)
        assert st.stats["std"][n] == pytest.approx(d[..., i].std(), rel=1e-12)
        assert st.stats["std_delta"][n] == pytest.approx(
            np.diff(d[..., i], axis=1).std(), rel=1e-12
        )


def test_normalizer_round_trip_and_train_zscore(tmp_path):
    ts = random_set()
    norm = Normalizer(FieldStats.from_trajectories(ts), ts.field_names)
    z = norm(ts.data)
    # float32 normalisation of values ~30 with std ~3: ~1e-6 relative round-off.
    np.testing.assert_allclose(z.reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(-1, 3).std(0), 1, atol=1e-5)
    np.testing.assert_allclose(norm.inverse(z), ts.data, rtol=1e-5, atol=1e-5)


def test_every_split_uses_the_stored_train_statistics(tmp_path):
    ts = random_set(n_traj=10)
    ts.data[8:] += 5.0  # valid/test distribution differs from train
    paths = write_dataset(ts, tmp_path)
    stats = FieldStats.load(paths["stats"])
    train_mean, train_std = stats.arrays(ts.field_names)
    np.testing.assert_allclose(train_mean, ts.data[:8].reshape(-1, 3).mean(0), rtol=1e-5)
    for split, rows in (("train", slice(0, 8)), ("valid", slice(8, 9)), ("test", slice(9, 10))):
        src = WindowSource(WellFile(paths[split]), 2, 1, stats=stats)
        el = src[0]
        raw = ts.data[rows][0, :3]
        expect = (raw - train_mean) / train_std
        np.testing.assert_allclose(np.concatenate([el["x"], el["y"]]), expect, rtol=1e-5, atol=1e-5)


def test_stats_file_errors(tmp_path):
    bad = tmp_path / "stats.yaml"
    bad.write_text('{"mean": {}}')
    with pytest.raises(ValueError, match="stats.yaml: missing key 'std'"):
        FieldStats.load(bad)
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        FieldStats.load(tmp_path / "nothere.yaml")
    real_yaml = tmp_path / "well.yaml"  # The Well's own files are YAML, not JSON
    real_yaml.write_text(
        "mean: {h: 1.0, velocity: [0.1, 0.2]}\nstd: {h: 2.0, velocity: [3.0, 4.0]}\n"
        "mean_delta: {h: 0.0, velocity: [0, 0]}\nstd_delta: {h: 0.5, velocity: [1, 1]}\n"
    )
    mean, std = FieldStats.load(real_yaml).arrays(["h", "velocity_x", "velocity_y"])
    np.testing.assert_allclose(std, [2.0, 3.0, 4.0])
    np.testing.assert_allclose(mean, [1.0, 0.1, 0.2])


def test_normalize_window_transform_matches_source_normalisation():
    import grain

    from jaxfm.data.normalize import NormalizeWindow

    ts = random_set()
    stats = FieldStats.from_trajectories(ts)
    raw = WindowSource(ts, 2, 1)
    ds = grain.MapDataset.source(raw).map(NormalizeWindow(Normalizer(stats, ts.field_names)))
    inside = WindowSource(ts, 2, 1, stats=stats)
    for i in (0, 7, len(raw) - 1):
        np.testing.assert_array_equal(ds[i]["x"], inside[i]["x"])
        np.testing.assert_array_equal(ds[i]["y"], inside[i]["y"])
        np.testing.assert_array_equal(ds[i]["field_ids"], raw[i]["field_ids"])


def test_stats_yaml_is_per_well_field_as_the_wells_normalisation_reads_it(tmp_path):
    import yaml

    from tests.data.well_checker import STATS_KEYS, stats_violations

    ts = random_set(fields=("density", "velocity_x", "velocity_y", "pressure"), n_traj=10)
    paths = write_dataset(ts, tmp_path)
    stats = yaml.safe_load(paths["stats"].read_text())
    assert sorted(stats) == sorted(STATS_KEYS)
    assert sorted(stats["mean"]) == ["density", "pressure", "velocity"]  # The Well's names
    assert stats_violations(stats, paths["train"]) == []
    d = ts.data[:8].astype(np.float64)
    delta = np.diff(d, axis=1)
    np.testing.assert_allclose(stats["mean"]["velocity"], d[..., 1:3].mean((0, 1, 2, 3)))
    np.testing.assert_allclose(stats["std"]["velocity"], d[..., 1:3].std((0, 1, 2, 3)))
    np.testing.assert_allclose(stats["rms"]["density"], np.sqrt((d[..., 0] ** 2).mean()))
    np.testing.assert_allclose(stats["rms_delta"]["pressure"], np.sqrt((delta[..., 3] ** 2).mean()))
    np.testing.assert_allclose(stats["std_delta"]["velocity"][1], delta[..., 2].std())
    # and jaxfm still normalises per channel from the same file
    mean, std = FieldStats.load(paths["stats"]).arrays(ts.field_names)
    np.testing.assert_allclose(mean, d.reshape(-1, 4).mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, d.reshape(-1, 4).std(0), rtol=1e-6)


def test_tensor_fields_are_nested_lists_and_round_trip(tmp_path):
    import yaml

    names = ("D_xx", "D_xy", "D_yx", "D_yy", "c")
    ts = random_set(fields=names)
    st = FieldStats.from_trajectories(ts)
    path = st.save(tmp_path / "stats.yaml")
    stats = yaml.safe_load(path.read_text())
    assert np.shape(stats["mean"]["D"]) == (2, 2) and np.shape(stats["mean"]["c"]) == ()
    np.testing.assert_allclose(stats["mean"]["D"][1][0], ts.data[..., 2].astype(float).mean())
    back = FieldStats.load(path)
    for key in ("mean", "std", "rms", "std_delta"):
        for n in names:
            assert back.stats[key][n] == pytest.approx(st.stats[key][n], rel=1e-12)


def test_old_per_channel_stats_files_still_load(tmp_path):
    import json

    old = tmp_path / "stats.yaml"  # as jaxfm wrote it before: JSON, one entry per channel
    old.write_text(
        json.dumps(
            {
                "mean": {"velocity_x": 1.0, "velocity_y": -2.0},
                "std": {"velocity_x": 3.0, "velocity_y": 4.0},
                "mean_delta": {"velocity_x": 0.0, "velocity_y": 0.5},
                "std_delta": {"velocity_x": 1.0, "velocity_y": 1.5},
            }
        )
    )
    st = FieldStats.load(old)
    mean, std = st.arrays(["velocity_y", "velocity_x"])
    np.testing.assert_allclose(mean, [-2.0, 1.0])
    np.testing.assert_allclose(std, [4.0, 3.0])
    # rms follows from mean and std: rms^2 = mean^2 + std^2
    assert st.stats["rms"]["velocity_y"] == pytest.approx(np.sqrt(20.0))
    assert st.stats["rms_delta"]["velocity_y"] == pytest.approx(np.sqrt(0.25 + 2.25))
