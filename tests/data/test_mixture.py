"""Multi-system sampling: one system per micro-batch, weights, determinism, resume, sharding."""

import grain
import numpy as np
import pytest

from jaxfm.data.mixture import MixtureBatches, mixture_dataset
from jaxfm.data.windows import WindowSource
from tests.data.fixtures import random_set


def _sources():
    a = WindowSource(random_set(system="navier_stokes", seed=1), 2, 1)
    b = WindowSource(random_set(system="shallow_water", fields=("h", "velocity_x", "velocity_y"),
                                shape=(4, 4), seed=2), 2, 1)
    c = WindowSource(random_set(system="diffusion_reaction", fields=("activator", "inhibitor"),
                                seed=3), 2, 1)
    return [a, b, c]


def test_one_system_per_micro_batch_and_weights():
    srcs = _sources()
    mix = MixtureBatches(srcs, batch_size=4, seed=0, weights=[0.6, 0.3, 0.1], length=3000)
    counts = np.bincount([mix.system_of(m) for m in range(3000)], minlength=3) / 3000
    # Multinomial: std of a frequency ≤ sqrt(0.25/3000) ≈ 0.009; 4 sigma.
    np.testing.assert_allclose(counts, [0.6, 0.3, 0.1], atol=0.037)
    for m in range(20):
        b = mix[m]
        src = srcs[mix.system_of(m)]
        assert b["x"].shape == (4, 2, *src.data.spatial_shape, len(src.field_names))
        assert b["system"] == src[0]["system"]
        np.testing.assert_array_equal(b["field_ids"], src[0]["field_ids"])
        for row in range(4):  # every row really comes from that system's source
            i = int(b["traj"][row]) * src.per_traj + int(b["start"][row])
            np.testing.assert_array_equal(b["x"][row], src[i]["x"])


def test_uniform_by_default():
    mix = MixtureBatches(_sources(), batch_size=2, seed=5)
    counts = np.bincount([mix.system_of(m) for m in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.037)


def test_deterministic_and_resumable_through_grain_state():
    ds = mixture_dataset(_sources(), batch_size=4, seed=7, length=50)
    it = iter(ds.to_iter_dataset())
    first = [next(it) for _ in range(5)]
    state = it.get_state()
    rest = [next(it) for _ in range(5)]
    resumed = iter(mixture_dataset(_sources(), batch_size=4, seed=7, length=50)
                   .to_iter_dataset())
    resumed.set_state(state)
    for a, b in zip(rest, [next(resumed) for _ in range(5)]):
        np.testing.assert_array_equal(a["x"], b["x"])
        assert a["system"] == b["system"]
    other = mixture_dataset(_sources(), batch_size=4, seed=8, length=50)
    assert any(not np.array_equal(first[i]["traj"], other[i]["traj"]) or
               first[i]["system"] != other[i]["system"] for i in range(5))


def test_process_shards_partition_the_micro_batch():
    srcs = _sources()
    full = MixtureBatches(srcs, batch_size=6, seed=1)
    parts = [MixtureBatches(srcs, batch_size=6, seed=1, shard=(p, 3)) for p in range(3)]
    for m in range(10):
        whole = full[m]
        for p, part in enumerate(parts):
            got = part[m]
            assert got["system"] == whole["system"]
            np.testing.assert_array_equal(got["x"], whole["x"][p::3])


def test_bad_arguments():
    with pytest.raises(ValueError, match="not divisible by the process count 4"):
        MixtureBatches(_sources(), batch_size=6, shard=(0, 4))
    with pytest.raises(ValueError, match="weights"):
        MixtureBatches(_sources(), batch_size=2, weights=[1, 2])
    mix = MixtureBatches(_sources(), 2, seed=3)
    assert repr(mix) == repr(MixtureBatches(_sources(), 2, seed=3))  # stable across builds
