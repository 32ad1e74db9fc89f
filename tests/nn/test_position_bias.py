"""T5 relative position bias: buckets against a float64 NumPy reference, periodic wrap."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.nn.position_bias import RelativePositionBias, t5_bucket, wrap_relative_positions


def _bucket_ref(rel: int, num_buckets: int = 32, max_distance: int = 32) -> int:
    """Scalar float64 transcription of T5's bidirectional bucketing rule."""
    half = num_buckets // 2
    n = -rel
    ret = half if n < 0 else 0
    n = abs(n)
    max_exact = half // 2
    if n < max_exact:
        return ret + n
    large = max_exact + int(
        math.log(n / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    )
    return ret + min(large, half - 1)


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 32), (32, 128), (16, 20)])
def test_buckets_match_reference(num_buckets, max_distance):
    rel = np.arange(-300, 301)
    got = np.asarray(
        t5_bucket(jnp.asarray(rel), num_buckets=num_buckets, max_distance=max_distance)
    )
    want = np.array([_bucket_ref(int(r), num_buckets, max_distance) for r in rel])
    np.testing.assert_array_equal(got, want)
    assert got.min() == 0 and got.max() == num_buckets - 1


def test_wrap_is_shortest_periodic_distance():
    for length in (6, 7, 8, 16):
        rel = np.arange(-(length - 1), length)
        got = np.asarray(wrap_relative_positions(jnp.asarray(rel), length))
        assert np.all(np.abs(got) <= length // 2)
        assert np.all((got - rel) % length == 0)  # same point on the circle
        mpp = np.asarray(wrap_relative_positions(jnp.asarray(rel), length, "mpp"))
        # MPP's rule, transcribed with Python's modulo: thresh = L // 2
        th = length // 2
        want = np.array([r % th if r < -th else (r % -th if r > th else r) for r in rel])
        np.testing.assert_array_equal(mpp, want)
        if length % 2 == 0:  # for even L the two rules differ only at distance exactly L/2
            differs = rel[mpp != got]
            assert set(np.abs(differs)) <= {th}


@pytest.mark.parametrize("length", [8, 16, 40])
def test_periodic_bias_is_circulant_and_open_is_not(length):
    bias = RelativePositionBias(3, rngs=nnx.Rngs(0))
    per = np.asarray(bias(length, periodic=True))[0]
    opn = np.asarray(bias(length, periodic=False))[0]
    assert per.shape == (3, length, length)
    # on a ring, shifting query and key together changes nothing (wrap-around included)
    np.testing.assert_array_equal(per, np.roll(per, (5, 5), axis=(1, 2)))
    # first token and last token are neighbours on a periodic axis, far apart on an open one
    np.testing.assert_array_equal(per[:, 0, length - 1], per[:, 1, 0])
    assert not np.array_equal(opn[:, 0, length - 1], opn[:, 1, 0])
    # the table lookup: bias[h, i, j] = table[bucket(j - i), h]
    table = np.asarray(bias.table[...])
    i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    rel = (j - i + length // 2) % length - length // 2
    buckets = np.vectorize(_bucket_ref)(rel.astype(int))
    np.testing.assert_array_equal(per, np.transpose(table[buckets], (2, 0, 1)))


def test_mpp_wrap_differs_only_at_half_distance():
    bias = RelativePositionBias(2, wrap="mpp", rngs=nnx.Rngs(0))
    circ = RelativePositionBias(2, rngs=nnx.Rngs(0))
    b_mpp, b_circ = np.asarray(bias(8, True))[0], np.asarray(circ(8, True))[0]
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    same = np.abs(j - i) != 4
    np.testing.assert_array_equal(b_mpp[:, same], b_circ[:, same])


def test_traced_periodic_flag_selects_the_same_bias():
    bias = RelativePositionBias(2, rngs=nnx.Rngs(1))
    for flag in (True, False):
        np.testing.assert_array_equal(
            np.asarray(bias(12, jnp.asarray(flag))), np.asarray(bias(12, flag))
        )


def test_per_sample_flags_pick_per_sample_bias():
    bias = RelativePositionBias(2, rngs=nnx.Rngs(1))
    both = np.asarray(bias(10, jnp.array([True, False, True])))
    assert both.shape == (3, 2, 10, 10)
    np.testing.assert_array_equal(both[0], np.asarray(bias(10, True))[0])
    np.testing.assert_array_equal(both[1], np.asarray(bias(10, False))[0])
    np.testing.assert_array_equal(both[2], both[0])
