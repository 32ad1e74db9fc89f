"""int8 weight-only quantization against a float64 NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.regressor import Regressor, RegressorConfig
from jaxfm.nn import quantize as qz


def _reference(w: np.ndarray):
    """Float64 NumPy absmax int8 quantization over axis -2 (the published recipe)."""
    w = np.asarray(w, np.float64)
    amax = np.abs(w).max(axis=-2, keepdims=True)
    s = np.where(amax > 0, amax / 127.0, 1.0)
    return np.clip(np.rint(w / s), -127, 127), s


@pytest.mark.parametrize("shape", [(64, 32), (4, 48, 16), (3, 3, 8, 12)])
def test_roundtrip_matches_reference_and_bound(shape):
    # NumPy inputs: jax.random.normal on a 4-D shape compiles for ~14 s on this CPU.
    w = jnp.asarray(np.random.default_rng(sum(shape)).normal(size=shape) * 0.3, jnp.float32)
    qw = qz.quantize_array(w)
    q_ref, s_ref = _reference(w)
    assert qw.q.dtype == jnp.int8 and qw.scale.dtype == jnp.float32
    assert qw.scale.shape == shape[:-2] + (1, shape[-1])
    q = np.asarray(qw.q, np.int64)
    assert q.min() >= -127 and q.max() <= 127
    # Each channel's absmax element maps to exactly +-127.
    assert np.all(np.abs(q).max(axis=-2) == 127)
    # Scales: one float32 rounding of the float64 value.
    np.testing.assert_allclose(np.asarray(qw.scale), s_ref, rtol=2e-7)
    # float32 division can flip a value lying within an ulp of a .5 tie: allow only
    # off-by-one codes there, and (by construction) almost never.
    diff = np.abs(q - q_ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # The absmax rounding bound |w - q s| <= s/2; the 1e-6 relative slack covers the
    # float32 product q*s and the float32 rounding of w/s (a few ulps of s).
    err = np.abs(np.asarray(qz.dequantize_array(qw), np.float64) - np.asarray(w, np.float64))
    assert np.all(err <= np.asarray(qw.scale, np.float64) * (0.5 + 1e-6))


def test_zero_channels_and_rows():
    w = np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)
    w[:, 2] = 0.0  # an all-zero output channel: scale 1, codes 0, exact round trip
    w[5, :] = 0.0  # an all-zero input row
    qw = qz.quantize_array(jnp.asarray(w))
    assert float(qw.scale[0, 2]) == 1.0
    assert np.all(np.asarray(qw.q)[:, 2] == 0) and np.all(np.asarray(qw.q)[5] == 0)
    back = np.asarray(qz.dequantize_array(qw))
    assert np.all(back[:, 2] == 0) and np.all(back[5] == 0)
    assert np.all(np.isfinite(back))


def test_rejects_vectors():
    with pytest.raises(ValueError, match="ndim >= 2"):
        qz.quantize_array(jnp.ones((5,)))


def _model(residual=False, hidden=64):
    return Regressor(
        RegressorConfig(features=3, hidden=hidden, depth=3, residual=residual), rngs=nnx.Rngs(0)
    )


@pytest.mark.parametrize("as_state", [True, False])
def test_tree_kernels_only_and_structure_kept(as_state):
    graphdef, state = nnx.split(_model())
    tree = state if as_state else nnx.to_pure_dict(state)
    qtree = qz.quantize(tree)
    flat = jax.tree_util.tree_leaves_with_path(
        qtree, is_leaf=lambda x: isinstance(x, qz.Int8Weight)
    )
    n_kernels = 0
    for path, leaf in flat:
        name = qz._leaf_name(path)
        if name == "kernel":
            assert isinstance(leaf, qz.Int8Weight)
            n_kernels += 1
        else:  # biases untouched: the very same arrays
            assert name == "bias" and not isinstance(leaf, qz.Int8Weight)
    assert n_kernels == 4
    for a, b in zip(
        jax.tree.leaves(nnx.to_pure_dict(state) if not as_state else state),
        jax.tree.leaves(qtree, is_leaf=lambda x: isinstance(x, qz.Int8Weight)),
    ):
        if not isinstance(b, qz.Int8Weight):
            assert a is b
    back = qz.dequantize(qtree)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    assert [x.dtype for x in jax.tree.leaves(back)] == [x.dtype for x in jax.tree.leaves(tree)]
    x = jnp.asarray(np.random.default_rng(2).normal(size=(8, 3)), jnp.float32)
    if as_state:
        y = nnx.merge(graphdef, back)(x)
        m = _model()
        nnx.update(m, back)
        np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(y))
    else:
        m = _model()
        nnx.replace_by_pure_dict(state, back)
        nnx.update(m, state)
        y = m(x)
    assert y.shape == (8, 3) and np.all(np.isfinite(np.asarray(y)))


def test_dtype_restored_bf16():
    w = jnp.asarray(np.random.default_rng(3).normal(size=(32, 8)), jnp.bfloat16)
    qw = qz.quantize({"kernel": w})["kernel"]
    assert qw.dtype == "bfloat16"
    assert qz.dequantize({"kernel": qw})["kernel"].dtype == jnp.bfloat16


def test_kernel_memory_four_times_smaller():
    # A pure-dict tree shaped like a 3x128 regressor (no model build: keeps the test fast).
    rng = np.random.default_rng(5)
    dims = [3, 128, 128, 128, 3]
    state = {
        f"l{i}": {
            "kernel": jnp.asarray(rng.normal(size=(a, b)), jnp.float32),
            "bias": jnp.zeros((b,), jnp.float32),
        }
        for i, (a, b) in enumerate(zip(dims, dims[1:]))
    }
    qtree = qz.quantize(state)
    before, after = qz.kernel_nbytes(state, qtree)
    kernels = [
        x
        for x in jax.tree.leaves(qtree, is_leaf=lambda x: isinstance(x, qz.Int8Weight))
        if isinstance(x, qz.Int8Weight)
    ]
    # int8 codes are exactly 4x smaller than the float32 kernels ...
    assert 4 * sum(k.q.nbytes for k in kernels) == before
    # ... plus one float32 scale per output channel.
    assert after == sum(k.q.nbytes + 4 * k.q.shape[-1] for k in kernels)
    assert before / after > 3.7
    assert qz.tree_nbytes(qtree) < qz.tree_nbytes(state)


def _numpy_forward(tree, x):
    """Float64 NumPy forward of the (non-residual) regressor for a pure-dict tree."""
    h = np.asarray(x, np.float64)
    for i in range(len(tree["hidden"])):
        layer = tree["hidden"][i]
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        # jax.nn.gelu's default tanh approximation, as the regressor uses it.
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    return h @ np.asarray(tree["out"]["kernel"], np.float64) + np.asarray(tree["out"]["bias"])


def test_model_output_change_measured_and_bounded():
    model = _model(hidden=128)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(256, 3)), jnp.float32)
    rep = qz.quantization_report(model, lambda m: m(x))
    # Per element the code error is uniform in +-s/2, i.e. an rms relative weight error of
    # (max|W|/127)/sqrt(12)/std(W) ~ 3.5/127/3.46 ~ 8e-3 for Gaussian columns of 128; four
    # layers add in quadrature to ~1.6e-2. 3e-2 leaves 2x headroom; 0 would mean nothing ran.
    assert 0 < rep["rel_l2"] < 3e-2, rep
    assert rep["max_abs"] >= rep["mean_abs"] > 0
    assert rep["kernel_compression"] > 3.7
    # The quantized model's output is what a float64 forward with q*s weights gives
    # (fp32 matmuls of width 128: 1e-5 relative).
    state = nnx.to_pure_dict(nnx.split(model)[1])
    deq = qz.dequantize(qz.quantize(state))
    y_q = nnx.merge(nnx.split(model)[0], qz.dequantize(qz.quantize(nnx.split(model)[1])))(x)
    y64 = _numpy_forward(deq, x)
    np.testing.assert_allclose(np.asarray(y_q), y64, rtol=1e-4, atol=1e-5)
    ref = qz.output_change(_numpy_forward(state, x), y64)
    assert abs(ref["rel_l2"] - rep["rel_l2"]) < 1e-3


def test_output_change_values():
    d = qz.output_change(np.array([1.0, -2.0, 2.0]), np.array([1.0, -1.0, 2.0]))
    assert d["max_abs"] == 1.0 and d["mean_abs"] == pytest.approx(1 / 3)
    assert d["rel_l2"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shapes differ"):
        qz.output_change(np.zeros(3), np.zeros(4))
