"""Multi-system sampling: one system per micro-batch, weights, determinism, resume, sharding."""

import numpy as np
import pytest

from jaxfm.data.mixture import MixtureWindows, mixture_dataset
from jaxfm.data.windows import WindowSource
from tests.data.fixtures import random_set


def _sources(same_grid=False):
    a = WindowSource(random_set(system="navier_stokes", seed=1), 2, 1)
    b = WindowSource(
        random_set(
            system="shallow_water",
            fields=("h", "velocity_x", "velocity_y"),
            shape=(6, 5) if same_grid else (4, 4),
            seed=2,
        ),
        2,
        1,
    )
    c = WindowSource(
        random_set(system="diffusion_reaction", fields=("activator", "inhibitor"), seed=3), 2, 1
    )
    return [a, b, c]


def test_weights_and_uniform_default():
    mix = MixtureWindows(_sources(), micro_batch=4, seed=0, weights=[0.6, 0.3, 0.1])
    counts = np.bincount([mix.system_of(m) for m in range(3000)], minlength=3) / 3000
    # Multinomial: std of a frequency ≤ sqrt(0.25/3000) ≈ 0.009; 4 sigma.
    np.testing.assert_allclose(counts, [0.6, 0.3, 0.1], atol=0.037)
    uni = MixtureWindows(_sources(), micro_batch=2, seed=5)
    counts = np.bincount([uni.system_of(m) for m in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.037)


def test_batches_are_single_system_and_real_windows():
    srcs = _sources()
    it = iter(mixture_dataset(srcs, batch_size=4, seed=1, length=20))
    mix = MixtureWindows(srcs, 4, seed=1, length=20)
    for m in range(8):
        b = next(it)
        src = srcs[mix.system_of(m)]
        assert b["x"].shape == (4, 2, *src.data.spatial_shape, len(src.field_names))
        assert (b["system"] == src[0]["system"]).all()
        for row in range(4):
            i = int(b["traj"][row]) * src.per_traj + int(b["start"][row])
            np.testing.assert_array_equal(b["x"][row], src[i]["x"])


def test_deterministic_and_resumable_through_iterator_state():
    it = iter(mixture_dataset(_sources(), batch_size=4, seed=7, length=50))
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    rest = [next(it) for _ in range(4)]
    resumed = iter(mixture_dataset(_sources(), batch_size=4, seed=7, length=50))
    resumed.set_state(state)
    for a, b in zip(rest, [next(resumed) for _ in range(4)]):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["system"], b["system"])
    again = iter(mixture_dataset(_sources(), batch_size=4, seed=7, length=50))
    for a in first:
        np.testing.assert_array_equal(a["x"], next(again)["x"])
    other = iter(mixture_dataset(_sources(), batch_size=4, seed=8, length=50))
    assert any(
        not np.array_equal(a["traj"], b["traj"]) or a["x"].shape != b["x"].shape
        for a, b in zip(first, [next(other) for _ in range(3)])
    )


def test_process_shards_partition_the_global_batch():
    srcs = _sources()
    whole = iter(mixture_dataset(srcs, batch_size=6, seed=1))
    parts = [
        iter(mixture_dataset(srcs, batch_size=6, seed=1, process_index=p, process_count=3))
        for p in range(3)
    ]
    for _ in range(6):
        w = next(whole)
        got = [next(p) for p in parts]
        np.testing.assert_array_equal(np.concatenate([g["x"] for g in got]), w["x"])


def test_grad_accum_micro_batches_each_one_system_with_padding():
    srcs = _sources(same_grid=True)
    k, b = 3, 6
    it = iter(mixture_dataset(srcs, batch_size=b, seed=2, grad_accum=k, pad_fields=3))
    mix = MixtureWindows(srcs, b // k, seed=2, pad_fields=3)
    seen = set()
    for step in range(6):
        batch = next(it)
        assert batch["x"].shape == (b, 2, 6, 5, 3)
        # The train step reshapes to (k, b/k, ...): each micro-batch is one system.
        sys_ids = batch["system"].reshape(k, b // k)
        assert (sys_ids == sys_ids[:, :1]).all()
        for j in range(k):
            src = srcs[mix.system_of(step * k + j)]
            c = len(src.field_names)
            rows = slice(j * (b // k), (j + 1) * (b // k))
            assert (batch["field_mask"][rows].sum(-1) == c).all()
            assert (batch["field_ids"][rows, c:] == -1).all()
            assert (batch["x"][rows, ..., c:] == 0).all()
            seen.add(int(sys_ids[j, 0]))
    assert len(seen) > 1  # accumulation really mixes systems


def test_bad_arguments():
    with pytest.raises(ValueError, match="pass pad_fields"):
        mixture_dataset(_sources(), batch_size=4, grad_accum=2)
    with pytest.raises(ValueError, match="one grid"):
        MixtureWindows(_sources(), 2, pad_fields=3)
    with pytest.raises(ValueError, match="weights"):
        MixtureWindows(_sources(), 2, weights=[1, 2])
    assert repr(MixtureWindows(_sources(), 2, seed=3)) == repr(
        MixtureWindows(_sources(), 2, seed=3)
    )
