"""Mixture of experts: every dispatch against a float64 NumPy "every expert on every token,
weighted" reference; balance and z losses at their analytic values; the capacity path
drops exactly the choices a NumPy simulation of the priority rule drops; aux-loss-free bias
balancing; expert-sharded equals unsharded on 8 CPU devices."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from jaxfm.nn.aux import pop_aux
from jaxfm.nn.moe import MoE, balance_loss, capacity, routed_fraction, router_z_loss
from jaxfm.parallel import ParallelConfig, batch_sharding, make_mesh, state_shardings

# fp32 layer vs float64 NumPy through two matmuls of width <= 32: 1e-4 (errors seen ~1e-6).
TOL = dict(rtol=1e-4, atol=1e-4)


def numpy_moe(m: MoE, x: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """float64 reference: top-k by router logits, softmax over the k, weighted experts.

    ``keep`` (T, k) bool drops (token, choice) pairs (capacity); None keeps all.
    """
    f64 = lambda v: np.asarray(v[...], np.float64)
    logits = x @ f64(m.router)
    idx = np.argsort(-logits, axis=-1, kind="stable")[:, : m.top_k]
    sel = np.take_along_axis(logits, idx, -1)
    gates = np.exp(sel - sel.max(-1, keepdims=True))
    gates /= gates.sum(-1, keepdims=True)
    gelu = lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2)))
    silu = lambda v: v / (1 + np.exp(-v))
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for r in range(m.top_k):
            if keep is not None and not keep[t, r]:
                continue
            e = idx[t, r]
            up = x[t] @ f64(m.w_up)[e]
            h = silu(x[t] @ f64(m.w_gate)[e]) * up if m.w_gate is not None else gelu(up)
            y[t] += gates[t, r] * (h @ f64(m.w_down)[e])
    return y, idx


def _fresh(seed=0, **kw):
    kw = dict(dim=16, hidden=32, n_experts=8, top_k=2) | kw
    return MoE(kw.pop("dim"), kw.pop("hidden"), kw.pop("n_experts"), rngs=nnx.Rngs(seed), **kw)


def _apply(m, x):
    """Forward under nnx.jit; returns (y, {metric: value}) with the sown values popped."""

    @nnx.jit
    def f(m, x):
        y = m(x)
        return y, pop_aux(m)

    y, (_, aux) = f(m, x)
    return y, {k.split("/")[-1]: float(v) for k, v in aux.items()}


@pytest.mark.parametrize(
    "dispatch, activation",
    [
        ("dropless", "gelu"),
        ("dropless", "swiglu"),
        pytest.param("dense", "gelu", marks=pytest.mark.slow),
    ],
)
def test_dispatch_matches_weighted_every_expert_reference(dispatch, activation):
    m = _fresh(dispatch=dispatch, activation=activation)
    x = np.random.default_rng(0).standard_normal((2, 24, 16))
    y, aux = _apply(m, jnp.asarray(x, jnp.float32))
    ref, _ = numpy_moe(m, x.reshape(-1, 16))
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 16), ref, **TOL)
    assert aux["dropped_frac"] == 0.0


def test_dropless_gradients_equal_dense():
    x = jax.random.normal(jax.random.key(0), (48, 16))
    grads = {}
    for dispatch in ("dropless", "dense"):
        m = _fresh(seed=1, dispatch=dispatch, activation="swiglu")

        @nnx.jit
        def g(m, x):
            def loss(m, x):
                y = m(x)
                aux, _ = pop_aux(m)
                return jnp.sum(jnp.sin(y)) + aux

            return nnx.grad(loss, argnums=(0, 1))(m, x)

        gm, gx = g(m, x)
        grads[dispatch] = (nnx.to_pure_dict(nnx.state(gm, nnx.Param)), gx)
    flat = [jax.tree.leaves(grads[d]) for d in ("dropless", "dense")]
    for a, b in zip(*flat):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def test_balance_loss_analytic_values():
    e, k, t = 8, 2, 64
    # perfect balance: uniform probabilities and every expert chosen by t·k/e tokens
    idx = jnp.stack([jnp.arange(t) % e, (jnp.arange(t) + 1) % e], axis=1)
    assert float(balance_loss(jnp.zeros((t, e)), idx)) == pytest.approx(k, abs=1e-6)
    # collapse: every token sends its two choices to experts 0 and 1 with all the mass
    logits = jnp.zeros((t, e)).at[:, :2].set(30.0)
    collapsed = jnp.broadcast_to(jnp.array([0, 1]), (t, k))
    assert float(balance_loss(logits, collapsed)) == pytest.approx(e * 1.0, rel=1e-6)
    # z-loss of zero logits is logsumexp(0)^2 = (log E)^2
    assert float(router_z_loss(jnp.zeros((t, e)))) == pytest.approx(math.log(e) ** 2, rel=1e-6)


def numpy_capacity_keep(idx: np.ndarray, n_experts: int, cap: int) -> np.ndarray:
    """Simulates the priority rule: all first choices (token order), then second choices."""
    used = np.zeros(n_experts, int)
    keep = np.zeros(idx.shape, bool)
    for r in range(idx.shape[1]):
        for t in range(idx.shape[0]):
            e = idx[t, r]
            if used[e] < cap:
                keep[t, r] = True
                used[e] += 1
    return keep


@pytest.mark.parametrize("cf", [1.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_capacity_drops_exactly_what_the_arithmetic_says(cf):
    m = _fresh(seed=2, dispatch="capacity", capacity_factor=cf)
    # a skewed router so that several experts overflow
    m.router[...] = m.router[...] + jnp.linspace(0.0, 1.5, 8)[None]
    x = np.random.default_rng(3).standard_normal((64, 16))
    t, k, e = 64, 2, 8
    cap = capacity(t, e, k, cf)
    assert cap == math.ceil(cf * t * k / e)  # 16 and 8 slots
    _, idx = numpy_moe(m, x)
    keep = numpy_capacity_keep(idx, e, cap)
    assert 0 < (~keep).sum() < keep.size  # the case is not trivial
    y, aux = _apply(m, jnp.asarray(x, jnp.float32))
    ref, _ = numpy_moe(m, x, keep)
    np.testing.assert_allclose(np.asarray(y), ref, **TOL)
    assert aux["dropped_frac"] == pytest.approx((~keep).sum() / keep.size, abs=1e-7)


def test_capacity_factor_e_over_k_drops_nothing():
    m = _fresh(seed=4, dispatch="capacity", capacity_factor=8 / 2)
    x = np.random.default_rng(5).standard_normal((40, 16))
    y, aux = _apply(m, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(y), numpy_moe(m, x)[0], **TOL)
    assert aux["dropped_frac"] == 0.0


@pytest.mark.slow
def test_aux_loss_free_bias_evens_out_the_load():
    m = _fresh(seed=6, bias_rate=0.05, lb_weight=0.0, z_weight=0.0)
    m.router[...] = m.router[...] + jnp.linspace(0.0, 0.3, 8)[None]
    x = jax.random.normal(jax.random.key(7), (256, 16)) + 1.0  # positive mean: a skewed router
    load0 = np.asarray(routed_fraction(m.route(x)[1], 8))

    @nnx.jit
    def train_step(m, x):
        m(x, deterministic=False)
        return pop_aux(m)[1]

    loads = [
        float(next(v for k, v in train_step(m, x).items() if k.endswith("max_load")))
        for _ in range(40)
    ]
    # the most loaded expert gets a negative bias, the least loaded a positive one
    bias = np.asarray(m.router_bias[...])
    assert bias[load0.argmax()] < 0 < bias[load0.argmin()]
    assert loads[-1] < 0.7 * loads[0]
    _apply(m, x)  # deterministic calls leave the bias alone
    np.testing.assert_array_equal(np.asarray(m.router_bias[...]), bias)


def test_losses_are_recorded_with_their_weights():
    m = _fresh(seed=8, lb_weight=0.5, z_weight=0.25)
    x = jax.random.normal(jax.random.key(9), (32, 16))
    logits, idx, _ = m.route(x)

    @nnx.jit
    def f(m, x):
        m(x)
        return pop_aux(m)

    total, aux = f(m, x)
    expect = 0.5 * balance_loss(logits, idx) + 0.25 * router_z_loss(logits)
    np.testing.assert_allclose(float(total), float(expect), rtol=1e-6)


@pytest.mark.parametrize("dispatch", ["capacity", pytest.param("dropless", marks=pytest.mark.slow)])
def test_expert_sharded_equals_unsharded(dispatch):
    assert jax.device_count() == 8
    m = _fresh(seed=10, dispatch=dispatch, capacity_factor=1.0, activation="swiglu")
    x = jax.random.normal(jax.random.key(11), (8, 16, 16))

    def loss(m, x):
        y = m(x)
        aux, _ = pop_aux(m)
        return jnp.mean(jnp.square(y)) + aux, y

    def grad_fn(m, x):
        (l, y), g = nnx.value_and_grad(loss, has_aux=True)(m, x)
        return l, y, nnx.to_pure_dict(nnx.state(g, nnx.Param))

    ref = nnx.jit(grad_fn)(m, x)

    mesh = make_mesh(ParallelConfig(strategy="fsdp_ep", data=1, expert=8))
    graphdef, state = nnx.split(m)
    shardings = state_shardings(state, mesh, "fsdp_ep")
    pure = jax.device_put(nnx.to_pure_dict(state), shardings)
    up = pure["w_up"]
    assert up.addressable_shards[0].data.shape == (1, 16, 32)  # one expert per device
    xs = jax.device_put(x, batch_sharding(mesh, 3))

    @jax.jit
    def sharded(pure, x):
        st = nnx.State(state)  # structure only; values replaced below
        nnx.replace_by_pure_dict(st, pure)
        return grad_fn(nnx.merge(graphdef, st), x)

    with jax.set_mesh(mesh):
        out = sharded(pure, xs)
    np.testing.assert_allclose(float(out[0]), float(ref[0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out[1]), np.asarray(ref[1]), **TOL)
    for a, b in zip(jax.tree.leaves(out[2]), jax.tree.leaves(ref[2])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)
