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
        "mean: {h: 1.0}\nstd: {h: 2.0}\nmean_delta: {h: 0.0}\nstd_delta: {h: 0.5}\n"
    )
    np.testing.assert_allclose(FieldStats.load(real_yaml).arrays(["h"])[1], [2.0])
