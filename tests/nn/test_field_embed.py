"""Field embedding, hMLP stem/de-stem and instance norms against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.nn.field_embed import FieldEmbedding, FieldVocabularyError, PatchDestem, PatchStem
from jaxfm.nn.instance_norm import InstanceNorm, RMSInstanceNorm

# float32 layers vs float64 NumPy on O(1) inputs with sums of <= a few hundred terms:
# accumulated rounding stays below ~1e-5 relative; 1e-4 leaves margin, catches any bug.
RTOL, ATOL = 1e-4, 1e-5


def _np(a):
    return np.asarray(a, np.float64)


def _conv_ref(x, kernel):
    """Strided conv, stride = kernel size, by explicit loops over output pixels."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    out = np.zeros((n, h // k, w // k, kernel.shape[-1]))
    for i in range(h // k):
        for j in range(w // k):
            patch = x[:, i * k : (i + 1) * k, j * k : (j + 1) * k, :]
            out[:, i, j] = np.einsum("nabc,abco->no", patch, kernel)
    return out


def _convT_ref(x, kernel):
    """Transposed conv, stride = kernel size: each input pixel paints a k x k block."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    out = np.zeros((n, h * k, w * k, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            out[:, i * k : (i + 1) * k, j * k : (j + 1) * k] = np.einsum(
                "nc,abco->nabo", x[:, i, j], kernel
            )
    return out


def _rmsin_ref(x, weight, eps=1e-8):
    std = x.std(axis=(1, 2), ddof=1, keepdims=True)
    return x / (std + eps) * weight


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def test_field_embedding_matches_numpy_and_scales_for_missing_fields():
    emb = FieldEmbedding(12, 16, rngs=nnx.Rngs(0))
    emb.bias[...] = jax.random.normal(jax.random.key(9), (16,))
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4, 3))
    ids = np.array([[5, 0, 9], [1, 11, 2]])
    got = emb(jnp.asarray(x, jnp.float32), jnp.asarray(ids))
    W, b = _np(emb.kernel[...]), _np(emb.bias[...])
    for s in range(2):
        want = np.sqrt(12 / 3) * (x[s] @ W[ids[s]] + b)
        np.testing.assert_allclose(_np(got[s]), want, rtol=RTOL, atol=ATOL)


def test_field_embedding_is_permutation_invariant_and_ignores_padding():
    emb = FieldEmbedding(12, 8, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    ids = jnp.array([4, 7, 1])
    perm = jnp.array([2, 0, 1])
    np.testing.assert_allclose(
        _np(emb(x, ids)), _np(emb(x[..., perm], ids[perm])), rtol=RTOL, atol=ATOL
    )
    # a padding channel (id -1) with garbage values gives the same output as leaving it out
    xpad = jnp.concatenate([x, 1e3 * jnp.ones_like(x[..., :1])], axis=-1)
    np.testing.assert_allclose(
        _np(emb(xpad, jnp.array([4, 7, 1, -1]))), _np(emb(x, ids)), rtol=RTOL, atol=ATOL
    )


def test_field_embedding_expansion_keeps_old_outputs():
    emb = FieldEmbedding(6, 8, rngs=nnx.Rngs(2))
    x = jax.random.normal(jax.random.key(1), (3, 4, 2))
    before = np.asarray(emb(x, jnp.array([0, 5])))
    old_rows = np.asarray(emb.kernel[...])
    emb.expand(3, rngs=nnx.Rngs(3))
    assert emb.n_fields == 9
    np.testing.assert_array_equal(np.asarray(emb.kernel[...])[:6], old_rows)
    np.testing.assert_array_equal(np.asarray(emb(x, jnp.array([0, 5]))), before)
    # the new rows are live: a new field id gives a different embedding from an old one
    assert not np.allclose(np.asarray(emb(x, jnp.array([0, 7]))), before)


def test_patch_stem_matches_numpy():
    stem = PatchStem(32, strides=(2, 2, 2), rngs=nnx.Rngs(0))
    for norm in stem.norms:  # non-trivial norm weights
        norm.weight[...] = 1.0 + 0.1 * jnp.arange(norm.weight.shape[0])
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 8))
    got = stem(jnp.asarray(x, jnp.float32))
    h = x
    for i, (k, n) in enumerate(zip(stem.kernels, stem.norms)):
        h = _rmsin_ref(_conv_ref(h, _np(k[...])), _np(n.weight[...]))
        if i < 2:
            h = _gelu(h)
    assert got.shape == (2, 2, 2, 32)
    np.testing.assert_allclose(_np(got), h, rtol=RTOL, atol=ATOL)


def test_patch_destem_matches_numpy_and_gathers_fields():
    de = PatchDestem(32, 10, strides=(2, 2, 2), rngs=nnx.Rngs(0))
    de.out_bias[...] = jnp.arange(10.0)
    x = np.random.default_rng(2).normal(size=(2, 2, 2, 32))
    ids = np.array([[3, 8], [9, 0]])
    got = de(jnp.asarray(x, jnp.float32), jnp.asarray(ids))
    h = x
    for k, n in zip(de.kernels, de.norms):
        h = _gelu(_rmsin_ref(_convT_ref(h, _np(k[...])), _np(n.weight[...])))
    full = _convT_ref(h, _np(de.out_kernel[...])) + np.arange(10.0)  # all 10 fields
    assert got.shape == (2, 16, 16, 2)
    for s in range(2):  # output channel c is vocabulary field ids[s, c]
        np.testing.assert_allclose(_np(got[s]), full[s][..., ids[s]], rtol=RTOL, atol=ATOL)


def test_patch_destem_expansion_and_zero_init():
    de = PatchDestem(16, 4, strides=(2, 2), zero_init_output=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 2, 2, 16))
    assert float(jnp.abs(de(x, jnp.array([0, 1]))).max()) == 0.0
    de = PatchDestem(16, 4, strides=(2, 2), rngs=nnx.Rngs(1))
    before = np.asarray(de(x, jnp.array([3, 1])))
    de.expand(2, rngs=nnx.Rngs(2))
    assert de.out_kernel.shape[-1] == 6
    np.testing.assert_array_equal(np.asarray(de(x, jnp.array([3, 1]))), before)
    assert de(x, jnp.array([5])).shape == (1, 8, 8, 1)


def test_instance_norms_match_numpy():
    x = np.random.default_rng(3).normal(size=(3, 5, 4, 6)) * 2 + 1
    rms = RMSInstanceNorm(6)
    rms.weight[...] = jnp.linspace(0.5, 2.0, 6)
    np.testing.assert_allclose(
        _np(rms(jnp.asarray(x, jnp.float32))),
        _rmsin_ref(x, np.linspace(0.5, 2.0, 6)),
        rtol=RTOL,
        atol=ATOL,
    )
    inn = InstanceNorm(6)
    inn.bias[...] = jnp.ones(6)
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        _np(inn(jnp.asarray(x, jnp.float32))),
        (x - mean) / np.sqrt(var + 1e-5) + 1,
        rtol=RTOL,
        atol=ATOL,
    )


def test_bad_input_raises():
    emb = FieldEmbedding(4, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="2 fields in x but 3 field ids"):
        emb(jnp.ones((1, 4, 2)), jnp.array([0, 1, 2]))
    stem = PatchStem(16, strides=(2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not divisible"):
        stem(jnp.ones((1, 6, 8, 4)))


def test_ids_beyond_the_vocabulary_raise_when_known():
    """Ids past the last row were once clamped onto it: two new fields shared one row."""
    emb = FieldEmbedding(4, 8, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 3, 2)), jnp.float32)
    with pytest.raises(FieldVocabularyError, match=r"\[4, 5\].*vocabulary of 4.*n_fields"):
        emb(x, jnp.array([4, 5]))
    destem = PatchDestem(16, 4, strides=(2, 2), rngs=nnx.Rngs(1))
    with pytest.raises(FieldVocabularyError, match=r"\[6\]"):
        destem(jnp.ones((1, 2, 2, 16)), jnp.array([0, 6]))


def test_ids_beyond_the_vocabulary_are_nan_under_jit():
    """Traced ids cannot raise: an unknown field poisons the output instead of aliasing."""
    rng = np.random.default_rng(8)
    emb = FieldEmbedding(4, 8, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.normal(size=(2, 3, 2)), jnp.float32)
    embed = nnx.jit(lambda m, x, ids: m(x, ids))
    assert np.isfinite(np.asarray(embed(emb, x, jnp.array([3, -1])))).all()
    assert np.isnan(np.asarray(embed(emb, x, jnp.array([1, 4])))).all()
    destem = PatchDestem(16, 4, strides=(2, 2), rngs=nnx.Rngs(1))
    z = jnp.asarray(rng.normal(size=(1, 2, 2, 16)), jnp.float32)
    y = np.asarray(nnx.jit(lambda m, z, ids: m(z, ids))(destem, z, jnp.array([2, 5])))
    assert np.isfinite(y[..., 0]).all() and np.isnan(y[..., 1]).all()
