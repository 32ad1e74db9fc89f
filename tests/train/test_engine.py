"""The train step: sharded == single device, shard_map == jit, accumulation == big batch,
bf16 compute keeps fp32 parameters, schedules, decay mask, abstract sharded init."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from jaxfm.data.pipeline import make_dataset
from jaxfm.models.regressor import RegressorConfig
from jaxfm.parallel.mesh import make_mesh
from jaxfm.parallel.options import ParallelConfig
from jaxfm.tasks.regression.task import RegressionTask
from jaxfm.train.optim import decay_mask, make_optimizer, make_schedule
from jaxfm.train.options import TrainConfig
from jaxfm.train.step import Engine


def _one_device_mesh():
    return Mesh(
        np.array(jax.devices()[:1]).reshape(1, 1, 1, 1), ("data", "fsdp", "tensor", "expert")
    )


def _train(task, source, tc: TrainConfig, mesh, strategy="dp", steps=3):
    tx, sched = make_optimizer(tc)
    engine = Engine(task, tc, tx, sched, mesh, strategy)
    state = engine.init(tc.seed)
    it = iter(make_dataset(source, batch_size=tc.batch_size, seed=tc.seed))
    step = engine.train_step()
    losses = []
    for _ in range(steps):
        state, m = step(state, engine.put_batch(next(it)))
        losses.append(float(m["loss"]))
    return engine, state, losses


def _params(state):
    return jax.tree.map(np.asarray, jax.device_get(state["params"]))


TC = TrainConfig(batch_size=32, lr=1e-2, warmup_steps=0, seed=3)


@pytest.mark.parametrize(
    "strategy, pc",
    [
        ("dp", ParallelConfig(data=8)),
        ("fsdp", ParallelConfig(data=1, fsdp=8)),
        ("fsdp", ParallelConfig(data=2, fsdp=4)),
    ],
)
def test_sharded_step_equals_single_device(task, lorenz, strategy, pc):
    _, ref_state, ref = _train(task, lorenz[0], TC, _one_device_mesh())
    _, state, got = _train(task, lorenz[0], TC, make_mesh(pc), strategy)
    # Same math, different reduction order across devices: float32 round-off only.
    np.testing.assert_allclose(got, ref, rtol=2e-5)
    _assert_params_close(state, ref_state)


def _assert_params_close(a, b):
    """Same parameters up to float32 round-off of a different reduction order."""
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), _params(a), _params(b)
    )


def test_shard_map_step_equals_jit_step(task, lorenz):
    mesh = make_mesh(ParallelConfig(data=8))
    _, s_jit, l_jit = _train(task, lorenz[0], TC, mesh)
    tc = TrainConfig(**{**TC.__dict__, "step_impl": "shard_map"})
    _, s_sm, l_sm = _train(task, lorenz[0], tc, mesh)
    np.testing.assert_allclose(l_sm, l_jit, rtol=2e-5)
    _assert_params_close(s_sm, s_jit)


def test_fsdp_shards_are_one_eighth_per_device():
    task = RegressionTask(RegressorConfig(features=16, hidden=256, depth=3))
    tc = TrainConfig(batch_size=32)
    tx, sched = make_optimizer(tc)
    engine = Engine(task, tc, tx, sched, make_mesh(ParallelConfig(data=1, fsdp=8)), "fsdp")
    state = engine.init(0)
    # Every array of >= 1024 elements is split 8 ways; smaller ones (biases) stay whole.
    big = [x for x in jax.tree.leaves(state["params"]) if x.size >= 1024]
    assert len(big) == 4  # (16,256), 2 x (256,256), (256,16)
    for leaf in big:
        for shard in leaf.addressable_shards:
            assert shard.data.size * 8 == leaf.size, (leaf.shape, shard.data.shape)
    total = sum(x.size for x in jax.tree.leaves(state["params"]))
    on_device0 = sum(x.addressable_shards[0].data.size for x in jax.tree.leaves(state["params"]))
    assert on_device0 < total / 7  # biases (replicated) are < 2% of this model
    # Adam moments are sharded like their parameters.
    for tree in (state["opt_state"][1][0].mu, state["opt_state"][1][0].nu):
        for leaf in jax.tree.leaves(tree):
            if leaf.size >= 1024:
                assert leaf.addressable_shards[0].data.size * 8 == leaf.size


def test_grad_accumulation_equals_one_big_batch(task, lorenz):
    mesh = make_mesh(ParallelConfig(data=8))
    _, s1, l1 = _train(task, lorenz[0], TC, mesh, steps=2)
    tc = TrainConfig(**{**TC.__dict__, "grad_accum": 4, "batch_size": 32})
    # 4 micro-batches of 8 over 8 devices needs micro % shards == 0: use 4 devices
    mesh4 = make_mesh(ParallelConfig(data=4), devices=jax.devices()[:4])
    _, s4, l4 = _train(task, lorenz[0], tc, mesh4, steps=2)
    np.testing.assert_allclose(l4, l1, rtol=2e-5)
    _assert_params_close(s4, s1)


def test_bf16_compute_keeps_fp32_params_and_tracks_fp32_loss(task, lorenz):
    mesh = make_mesh(ParallelConfig(data=8))
    _, s32, l32 = _train(task, lorenz[0], TC, mesh)
    tc = TrainConfig(**{**TC.__dict__, "compute_dtype": "bfloat16"})
    _, s16, l16 = _train(task, lorenz[0], tc, mesh)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s16["params"]))
    assert all(
        x.dtype == jnp.float32
        for x in jax.tree.leaves(s16["opt_state"])
        if jnp.issubdtype(x.dtype, jnp.floating)
    )
    # bf16 has 8 mantissa bits: relative error ~ 2^-8 per op, a few ops deep -> 5%.
    np.testing.assert_allclose(l16, l32, rtol=5e-2)
    assert l16 != l32  # the cast really happened


def test_schedule_warmup_then_cosine():
    tc = TrainConfig(steps=110, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    s = make_schedule(tc)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    for t in (35, 60, 110):
        frac = (t - 10) / 100
        expected = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac))
        assert float(s(t)) == pytest.approx(expected, rel=1e-5)


def test_weight_decay_skips_vectors():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones((4,)), "scale": jnp.ones((4,))}
    assert decay_mask(params) == {"w": True, "b": False, "scale": False}
    tc = TrainConfig(lr=0.1, warmup_steps=0, schedule="constant", weight_decay=0.5, clip_norm=None)
    tx, _ = make_optimizer(tc)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert float(new["w"][0, 0]) == pytest.approx(1 - 0.1 * 0.5)
    assert float(new["b"][0]) == 1.0 and float(new["scale"][0]) == 1.0


def test_clipping_bounds_the_update():
    tc = TrainConfig(
        lr=1.0, warmup_steps=0, schedule="constant", optimizer="sgd", b1=0.0, clip_norm=1.0
    )
    tx, _ = make_optimizer(tc)
    params = {"w": jnp.zeros((4,))}
    grads = {"w": jnp.full((4,), 10.0)}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-6)


def test_same_seed_same_init_different_seed_differs(task):
    tc = TrainConfig(batch_size=32)
    tx, sched = make_optimizer(tc)
    engine = Engine(task, tc, tx, sched, make_mesh(ParallelConfig(data=8)), "dp")
    a, b, c = (_params(engine.init(s)) for s in (1, 1, 2))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


def test_fp32_params_skip_the_bf16_cast_and_weight_decay():
    from flax import nnx

    from jaxfm.nn.params import Fp32Param, cast_floats

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(jnp.full((4, 4), 1 / 3, jnp.float32))
            self.a_log = Fp32Param(jnp.full((4, 4), 1 / 3, jnp.float32))

        def __call__(self, x):
            return x @ self.w[...] + x @ self.a_log[...].astype(x.dtype)

    class TinyTask:
        def build_model(self, rngs):
            return Tiny(rngs)

        def loss(self, model, batch, rngs):
            return jnp.mean(model(batch["x"]).astype(jnp.float32) ** 2), {}

    tc = TrainConfig(
        batch_size=8,
        compute_dtype="bfloat16",
        weight_decay=0.5,
        lr=0.1,
        warmup_steps=0,
        schedule="constant",
        clip_norm=None,
    )
    engine = Engine(TinyTask(), tc, None, None, make_mesh(ParallelConfig(data=8)), "dp")
    assert engine.keep_fp32["params"] == {"w": False, "a_log": True}
    state = engine.init(0)
    cast = cast_floats(state["params"], jnp.bfloat16, engine.keep_fp32["params"])
    assert cast["w"].dtype == jnp.bfloat16 and cast["a_log"].dtype == jnp.float32
    assert decay_mask(state["params"], engine.keep_fp32["params"]) == {"w": True, "a_log": False}
    zeros = jax.tree.map(jnp.zeros_like, state["params"])
    updates, _ = engine.tx.update(zeros, engine.tx.init(state["params"]), state["params"])
    assert float(jnp.abs(updates["a_log"]).max()) == 0.0  # no decay
    assert float(updates["w"][0, 0]) == pytest.approx(-0.1 * 0.5 / 3, rel=1e-6)


def test_mamba_marks_its_ssm_parameters_fp32():
    from flax import nnx

    from jaxfm.nn.mamba import Mamba, SSMParam
    from jaxfm.nn.params import Fp32Param

    assert issubclass(SSMParam, Fp32Param)
    m = Mamba(16, rngs=nnx.Rngs(0))
    kinds = {type(v).__name__ for _, v in nnx.to_flat_state(nnx.state(m, Fp32Param))}
    assert kinds == {"SSMParam"}
