"""Window source: indexing, stride, rollout targets, ids, lazy vs in-memory, Grain."""

import grain
import numpy as np
import pytest

from jaxfm.data.fields import default_field_registry, default_system_registry
from jaxfm.data.well import WellFile, write_well
from jaxfm.data.windows import WindowSource
from tests.data.fixtures import random_set


def test_windows_match_direct_slicing():
    ts = random_set(n_traj=3, n_steps=10)
    src = WindowSource(ts, n_steps_input=2, n_steps_output=3, stride=2)
    span = (2 + 3 - 1) * 2 + 1
    assert src.per_traj == 10 - span + 1 and len(src) == 3 * src.per_traj
    for i in range(len(src)):
        el = src[i]
        traj, start = divmod(i, src.per_traj)
        frames = ts.data[traj, start : start + span : 2]
        np.testing.assert_array_equal(el["x"], frames[:2])
        np.testing.assert_array_equal(el["y"], frames[2:])
        assert el["x"].shape == (2, 6, 5, 3) and el["x"].dtype == np.float32
        assert el["y"].shape == (3, 6, 5, 3)
        assert (el["traj"], el["start"]) == (traj, start)
    np.testing.assert_array_equal(src[0]["field_ids"], default_field_registry().ids(ts.field_names))
    assert src[0]["field_ids"].dtype == np.int32 and src[0]["system"].dtype == np.int32
    assert src[0]["system"] == default_system_registry().id("navier_stokes")
    with pytest.raises(IndexError):
        src[len(src)]


def test_lazy_file_source_equals_memory_source_and_plugs_into_grain(tmp_path):
    ts = random_set()
    lazy = WindowSource(WellFile(write_well(ts, tmp_path / "a.hdf5")), 4, 1)
    mem = WindowSource(ts, 4, 1)
    ds = grain.MapDataset.source(lazy).shuffle(seed=3)
    order = [int(e["traj"]) * lazy.per_traj + int(e["start"]) for e in ds]
    assert sorted(order) == list(range(len(lazy)))
    for e, i in zip(ds, order):
        np.testing.assert_array_equal(e["x"], mem[i]["x"])
    assert "a.hdf5" in repr(lazy) and repr(lazy) == repr(
        WindowSource(WellFile(lazy.data.path), 4, 1)
    )


def test_bad_configuration_and_nan_are_reported():
    ts = random_set(n_steps=4)
    with pytest.raises(ValueError, match="needs 6"):
        WindowSource(ts, 5, 1)  # 4 frames, a window needs 5 + 1
    ts.data[1, 2, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="trajectory 1"):
        WindowSource(ts, 2, 1)


def test_window_source_through_team_pipeline(tmp_path):
    from jaxfm.data.pipeline import make_dataset

    ts = random_set(n_traj=4)
    src = WindowSource(WellFile(write_well(ts, tmp_path / "a.hdf5")), 3, 2)
    it = iter(make_dataset(src, batch_size=4, seed=0))
    batch = next(it)
    assert batch["x"].shape == (4, 3, 6, 5, 3) and batch["y"].shape == (4, 2, 6, 5, 3)
    for row in range(4):
        i = int(batch["traj"][row]) * src.per_traj + int(batch["start"][row])
        np.testing.assert_array_equal(batch["y"][row], src[i]["y"])


@pytest.mark.slow
def test_lazy_source_in_grain_worker_processes(tmp_path):
    # Worker processes receive the pickled source (no open h5py handle) and open the file
    # themselves; batches must equal the in-process ones.
    import absl.flags

    from jaxfm.data.pipeline import make_dataset

    absl.flags.FLAGS.mark_as_parsed()
    ts = random_set(n_traj=4)
    src = WindowSource(WellFile(write_well(ts, tmp_path / "a.hdf5")), 3, 1)
    local = iter(make_dataset(src, batch_size=4, seed=0))
    remote = iter(make_dataset(src, batch_size=4, seed=0, worker_count=1))
    for _ in range(3):
        a, b = next(local), next(remote)
        np.testing.assert_array_equal(a["x"], b["x"])


def test_concat_windows_joins_strides_of_one_system():
    from jaxfm.data.windows import ConcatWindows

    ts = random_set(n_traj=2, n_steps=12)
    parts = [WindowSource(ts, 3, 1, stride=k) for k in (1, 2, 3)]
    cat = ConcatWindows(parts)
    assert len(cat) == sum(len(p) for p in parts)
    assert cat.field_names == parts[0].field_names and cat.system == parts[0].system
    flat = [(k, i) for k, p in enumerate(parts) for i in range(len(p))]
    for j, (k, i) in enumerate(flat):
        np.testing.assert_array_equal(cat[j]["x"], parts[k][i]["x"])
        np.testing.assert_array_equal(cat[j]["y"], parts[k][i]["y"])
    with pytest.raises(IndexError):
        cat[len(cat)]
    other = WindowSource(random_set(n_traj=1, n_steps=12, system="shallow_water"), 3, 1)
    with pytest.raises(ValueError, match="one system"):
        ConcatWindows([parts[0], other])
