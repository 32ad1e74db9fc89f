"""AViT: MPP parameter counts, shapes, delta = persistence at init, vocabulary expansion,
field-permutation equivariance, periodic boundary handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.surrogate import AViT, avit_config, mpp_unused_params
from jaxfm.nn.trunk import count_params


def _mpp_closed_form(d: int, heads: int, depth: int, n: int = 12) -> int:
    """MPP AViT parameter count in closed form (from MPP's module definitions), patch 16 =
    three stem stages."""
    q, dh = d // 4, d // heads
    return (
        (n + 1) * q
        + 20 * q * q
        + 4 * q * d
        + 4 * q
        + 2 * d
        + depth * (16 * d * d + 26 * d + 8 * dh + 64 * heads)
        + 4 * q * d
        + 4 * q * q
        + 4 * q
        + 16 * q * n
        + n
    )


@pytest.mark.parametrize(
    "name,dims,published",
    [
        ("Ti", (192, 3, 12), 7_285_884),
        ("S", (384, 6, 12), 28_979_436),
        pytest.param("B", (768, 12, 12), None, marks=pytest.mark.slow),
        pytest.param("L", (1024, 16, 24), None, marks=pytest.mark.slow),
    ],
)
def test_parameter_counts_match_mpp(name, dims, published):
    cfg = avit_config(name)
    model = nnx.eval_shape(lambda: AViT(cfg, rngs=nnx.Rngs(0)))
    ours = count_params(model)
    mpp = _mpp_closed_form(*dims)
    if published is not None:
        assert mpp == published  # the closed form reproduces MPP's printed counts
    # we do not create MPP's never-used RMSInstanceNorm2d biases (module docstring)
    assert ours + mpp_unused_params(cfg) == mpp


@pytest.fixture(scope="module")
def batch():
    k1, k2 = jax.random.split(jax.random.key(0))
    # offsets and scales per field, as in physical data
    x = jax.random.normal(k1, (2, 3, 16, 16, 3)) * jnp.array([1.0, 0.1, 5.0]).reshape(
        1, 1, 1, 1, 3
    ) + jnp.array([0.0, 2.0, 60.0]).reshape(1, 1, 1, 1, 3)
    return x, jnp.array([[0, 4, 7], [0, 4, 7]], jnp.int32)


_JIT_APPLY = nnx.jit(lambda m, x, i, p: m(x, i, periodic=p))  # one cache for every test


def _apply(model, x, ids, periodic=(False, False)):
    return _JIT_APPLY(model, x, ids, jnp.asarray(periodic))


# layer_scale 1 (not MPP's 1e-6) so the blocks, not just stem/de-stem, shape the output;
# one config for the full-state tests so they share compiled programs
_FULL = dict(delta=False, n_fields=8, layer_scale=1.0)


def test_delta_model_starts_as_persistence(batch):
    x, ids = batch
    model = AViT(avit_config("smoke"), rngs=nnx.Rngs(0))
    y = _apply(model, x, ids)
    assert y.shape == (2, 16, 16, 3)
    # zero output kernel: prediction = last frame up to the RevIN round trip (~1 ulp of 60)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x[:, -1]), rtol=0, atol=2e-5)


def test_full_state_model_expansion_and_field_permutation(batch):
    x, ids = batch
    model = AViT(avit_config("smoke", **_FULL), rngs=nnx.Rngs(1))
    y = np.asarray(_apply(model, x, ids))
    assert np.all(np.isfinite(y)) and not np.allclose(y, np.asarray(x[:, -1]), atol=1e-2)
    # permuting the fields of the input permutes the output the same way
    perm = jnp.array([2, 0, 1])
    yp = np.asarray(_apply(model, x[..., perm], ids[:, perm]))
    # float32 sums in a different order through 1 block: ~1e-6 of O(60) outputs
    np.testing.assert_allclose(yp, y[..., np.asarray(perm)], rtol=1e-5, atol=1e-4)
    # appending vocabulary rows leaves the outputs of the old fields unchanged
    model.expand_fields(3, rngs=nnx.Rngs(2))
    assert model.n_fields == 11
    np.testing.assert_allclose(np.asarray(_apply(model, x, ids)), y, rtol=1e-6, atol=1e-5)
    y_new = np.asarray(_apply(model, x, jnp.array([[0, 4, 9], [0, 4, 10]])))
    assert not np.allclose(y_new[..., 2], y[..., 2])


def test_periodic_flags_per_sample(batch):
    x, ids = batch
    model = AViT(avit_config("smoke", **_FULL), rngs=nnx.Rngs(3))
    open_ = np.asarray(_apply(model, x, ids, (False, False)))
    per = np.asarray(_apply(model, x, ids, (True, True)))
    assert not np.allclose(open_, per, atol=1e-4)  # the bias really depends on the BCs
    mixed = np.asarray(_apply(model, x, ids, np.array([[True, True], [False, False]])))
    np.testing.assert_allclose(mixed[0], per[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mixed[1], open_[1], rtol=1e-5, atol=1e-4)


def test_bad_inputs_raise(batch):
    x, ids = batch
    model = AViT(avit_config("smoke"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not divisible by patch"):
        model(x[:, :, :12, :12], ids)
    with pytest.raises(ValueError, match="periodic must have shape"):
        model(x, ids, periodic=(True, True, True))
    with pytest.raises(ValueError, match="unknown AViT preset"):
        avit_config("XL")


def test_new_fields_beyond_the_vocabulary_never_alias(batch):
    """Two fields past the vocabulary once shared its last row; now eager calls raise and
    jitted ones turn those fields' outputs (and, through the shared embedding, all) NaN."""
    from jaxfm.nn.field_embed import FieldVocabularyError

    x, _ = batch
    model = AViT(avit_config("smoke", **_FULL), rngs=nnx.Rngs(4))
    new = jnp.array([[0, 8, 9], [0, 8, 9]], jnp.int32)  # vocabulary has rows 0..7
    with pytest.raises(FieldVocabularyError, match="model.avit.n_fields"):
        model(x, new)
    assert np.isnan(np.asarray(_apply(model, x, new))).all()
