"""Grain pipeline: epochs reshuffled from the seed, exact resume from iterator state,
process slices that reassemble the global batch, lazy HDF5 source, clear errors."""

import pickle

import h5py
import numpy as np
import pytest

from jaxfm.data.pipeline import check_batch, make_dataset
from jaxfm.data.sources import ArraySource, H5Source


def _src(n=24):
    return ArraySource(
        {"i": np.arange(n), "x": np.arange(n, dtype=np.float32)[:, None] * 2}, "range"
    )


def _take(it, k):
    return [next(it)["i"].tolist() for _ in range(k)]


def test_each_epoch_is_a_fresh_permutation_fixed_by_the_seed():
    batches = _take(iter(make_dataset(_src(), batch_size=8, seed=1)), 6)  # 2 epochs
    epoch0, epoch1 = sum(batches[:3], []), sum(batches[3:], [])
    assert sorted(epoch0) == sorted(epoch1) == list(range(24))
    assert epoch0 != epoch1 and epoch0 != list(range(24))
    again = _take(iter(make_dataset(_src(), batch_size=8, seed=1)), 6)
    other = _take(iter(make_dataset(_src(), batch_size=8, seed=2)), 6)
    assert again == batches and other != batches


def test_iterator_state_resumes_the_stream_exactly():
    it = iter(make_dataset(_src(), batch_size=8, seed=0))
    _take(it, 4)
    state = it.get_state()
    expected = _take(it, 5)
    fresh = iter(make_dataset(_src(), batch_size=8, seed=0))
    fresh.set_state(state)
    assert _take(fresh, 5) == expected


def test_process_slices_reassemble_the_global_batch():
    full = _take(iter(make_dataset(_src(), batch_size=8, seed=3)), 5)
    parts = [
        _take(iter(make_dataset(_src(), batch_size=8, seed=3, process_index=p, process_count=2)), 5)
        for p in range(2)
    ]
    for step in range(5):
        assert parts[0][step] + parts[1][step] == full[step]


def test_worker_processes_give_the_same_stream():
    from jaxfm.train.loop import _mark_absl_flags_parsed

    _mark_absl_flags_parsed()
    ref = _take(iter(make_dataset(_src(), batch_size=8, seed=5)), 4)
    it = iter(make_dataset(_src(), batch_size=8, seed=5, worker_count=1))
    try:
        assert _take(it, 4) == ref
    finally:
        if hasattr(it, "close"):
            it.close()


def test_h5_source_reads_lazily_and_pickles_without_a_handle(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["inputs"] = np.arange(30, dtype=np.float32).reshape(10, 3)
        f["targets/y"] = np.arange(10)
    src = H5Source(path, {"x": "inputs", "y": "targets/y"})
    assert len(src) == 10 and src._file is None
    np.testing.assert_array_equal(src[4]["x"], [12, 13, 14])
    clone = pickle.loads(pickle.dumps(src))
    assert clone._file is None and clone[9]["y"] == 9
    assert repr(clone) == repr(src)
    batch = next(iter(make_dataset(src, batch_size=5, seed=0)))
    assert batch["x"].shape == (5, 3)


def test_h5_source_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="HDF5 file not found: .*nope.h5"):
        H5Source(tmp_path / "nope.h5", ["x"])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(OSError, match="bad.h5: not a readable HDF5 file"):
        H5Source(bad, ["x"])
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f["a"] = np.zeros(3)
    with pytest.raises(KeyError, match="good.h5: missing dataset 'b'"):
        H5Source(good, ["a", "b"])


def test_array_source_rejects_ragged_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        ArraySource({"a": np.zeros(3), "b": np.zeros(4)})


def test_batch_arithmetic_errors():
    check_batch(64, shards=8, process_count=2, grad_accum=2)
    with pytest.raises(ValueError, match=r"not divisible by 3 processes \(64 / 3 = 21.33"):
        check_batch(64, shards=8, process_count=3)
    with pytest.raises(ValueError, match="grad_accum 3"):
        check_batch(64, shards=8, grad_accum=3)
