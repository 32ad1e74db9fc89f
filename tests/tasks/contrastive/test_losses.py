"""Contrastive losses against a float64 NumPy reference, and sharded == unsharded on 8 devices."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxfm.tasks.contrastive.losses import (
    in_batch_accuracy,
    infonce_loss,
    infonce_loss_local,
    l2_normalize,
    siglip_loss,
    siglip_loss_local,
)

# float32 losses of O(1..10) over B=32 logits of magnitude <= 20: sums of ~1e3 float32 terms
# carry ~1e-6 relative error; 1e-5 relative leaves margin without hiding a wrong formula.
RTOL = 1e-5


def _np_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _np_lse(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def np_infonce(a, b, s):
    a, b = _np_normalize(a.astype(np.float64)), _np_normalize(b.astype(np.float64))
    logits = s * a @ b.T
    i = np.arange(len(a))
    l_ab = np.mean(_np_lse(logits, 1) - logits[i, i])
    l_ba = np.mean(_np_lse(logits, 0) - logits[i, i])
    return 0.5 * (l_ab + l_ba)


def np_siglip(a, b, t, c):
    a, b = _np_normalize(a.astype(np.float64)), _np_normalize(b.astype(np.float64))
    logits = t * a @ b.T + c
    y = 2 * np.eye(len(a)) - 1
    return np.sum(np.log1p(np.exp(-y * logits))) / len(a)


def _pair(seed, n=32, e=16):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, e)).astype(np.float32)
    b = (a + 0.8 * rng.normal(size=(n, e))).astype(np.float32) * rng.uniform(0.5, 3, (n, 1))
    return a, b.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_infonce_matches_numpy(seed):
    a, b = _pair(seed)
    for s in (1.0, 14.3, 20.0):
        got = float(infonce_loss(jnp.asarray(a), jnp.asarray(b), s))
        np.testing.assert_allclose(got, np_infonce(a, b, s), rtol=RTOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_siglip_matches_numpy(seed):
    a, b = _pair(seed)
    for t, c in ((10.0, -10.0), (3.0, -2.71)):
        got = float(siglip_loss(jnp.asarray(a), jnp.asarray(b), t, c))
        np.testing.assert_allclose(got, np_siglip(a, b, t, c), rtol=RTOL)


def test_infonce_properties():
    a, b = _pair(3)
    a, b = jnp.asarray(a), jnp.asarray(b)
    base = float(infonce_loss(a, b, 10.0))
    # symmetric under modality swap, invariant to row scale and to a joint permutation
    np.testing.assert_allclose(float(infonce_loss(b, a, 10.0)), base, rtol=RTOL)
    np.testing.assert_allclose(float(infonce_loss(3 * a, 0.5 * b, 10.0)), base, rtol=RTOL)
    perm = np.random.default_rng(0).permutation(a.shape[0])
    np.testing.assert_allclose(float(infonce_loss(a[perm], b[perm], 10.0)), base, rtol=RTOL)
    # random high-dimensional embeddings at s = 1: logits ~ 0, loss ~ log B
    rng = np.random.default_rng(1)
    r1, r2 = rng.normal(size=(2, 64, 512)).astype(np.float32)
    np.testing.assert_allclose(float(infonce_loss(r1, r2, 1.0)), math.log(64), atol=0.05)
    # identical orthonormal rows at s = 100: every positive wins by 100, loss ~ 0
    eye = jnp.eye(16, dtype=jnp.float32)
    assert float(infonce_loss(eye, eye, 100.0)) < 1e-6  # exact value 15 e^-100
    assert float(in_batch_accuracy(eye, eye)) == 1.0


def test_zero_vectors_have_finite_gradients():
    a = jnp.zeros((4, 8)).at[1].set(1.0)
    b = jnp.ones((4, 8))
    for f in (lambda a: infonce_loss(a, b, 10.0), lambda a: siglip_loss(a, b, 10.0, -10.0)):
        g = jax.jit(jax.grad(f))(a)
        assert bool(jnp.all(jnp.isfinite(g)))
    assert bool(jnp.all(jnp.isfinite(l2_normalize(jnp.zeros((2, 3))))))


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))


def _loss_fns(kind):
    if kind == "infonce":
        glob = lambda a, b, p: infonce_loss(a, b, jnp.exp(p[0]))
        loc = lambda a, b, p: infonce_loss_local(a, b, jnp.exp(p[0]), "data")
    else:
        glob = lambda a, b, p: siglip_loss(a, b, jnp.exp(p[0]), p[1])
        loc = lambda a, b, p: siglip_loss_local(a, b, jnp.exp(p[0]), p[1], "data")
    return glob, loc


@pytest.mark.parametrize("kind", ["infonce", "siglip"])
def test_sharded_equals_unsharded(kind):
    """Global loss under a batch-sharded jit, and the shard_map local loss, equal one device.

    Gradients w.r.t. both embeddings and the (replicated) temperature/bias parameters are
    compared, which catches a missing all-gather (loss over local negatives only) and a
    double-counted replicated-parameter gradient (N times too large).
    """
    a, b = _pair(7, n=64)
    params = jnp.asarray([math.log(12.0), -3.0], jnp.float32)
    glob, loc = _loss_fns(kind)
    ref_val, ref_grads = jax.value_and_grad(glob, argnums=(0, 1, 2))(a, b, params)
    np.testing.assert_allclose(
        float(ref_val),
        np_infonce(a, b, 12.0) if kind == "infonce" else np_siglip(a, b, 12.0, -3.0),
        rtol=RTOL,
    )

    mesh = _mesh()
    rows = NamedSharding(mesh, P("data", None))
    a_s, b_s = jax.device_put(a, rows), jax.device_put(b, rows)
    p_s = jax.device_put(params, NamedSharding(mesh, P()))
    sharded = jax.jit(jax.value_and_grad(glob, argnums=(0, 1, 2)))
    local = jax.jit(
        jax.value_and_grad(
            jax.shard_map(loc, mesh=mesh, in_specs=(P("data"), P("data"), P()), out_specs=P()),
            argnums=(0, 1, 2),
        )
    )
    for fn in (sharded, local):
        val, grads = fn(a_s, b_s, p_s)
        # gradients: same float32 arithmetic reordered across devices
        np.testing.assert_allclose(float(val), float(ref_val), rtol=RTOL)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["infonce", "siglip"])
def test_task_objective_inside_engine_style_shard_map(loss):
    """The task objective picks the gathered local loss when the batch axis is bound.

    Emulates the engine's ``step_impl=shard_map`` step: per-device rows, the loss pmean-ed
    over "data" and differentiated *inside* shard_map. Value and embedding gradients must
    equal the global single-device loss (a non-gathered local loss would differ).
    """
    import types

    from jaxfm.tasks.contrastive.task import contrastive_objective

    a, b = _pair(11, n=64)
    model = types.SimpleNamespace(
        cfg=types.SimpleNamespace(loss=loss),
        scale=lambda: jnp.float32(9.0),
        logit_bias=jnp.float32(-2.0) if loss == "siglip" else None,
    )
    ref_val, ref_grads = jax.value_and_grad(
        lambda a, b: contrastive_objective(model, a, b)[0], argnums=(0, 1)
    )(a, b)

    def local(a, b):
        f = lambda a, b: jax.lax.pmean(contrastive_objective(model, a, b)[0], "data")
        return jax.value_and_grad(f, argnums=(0, 1))(a, b)

    fn = jax.jit(
        jax.shard_map(
            local,
            mesh=_mesh(),
            in_specs=(P("data"), P("data")),
            out_specs=(P(), (P("data"), P("data"))),
        )
    )
    val, grads = fn(a, b)
    np.testing.assert_allclose(float(val), float(ref_val), rtol=RTOL)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-6)
