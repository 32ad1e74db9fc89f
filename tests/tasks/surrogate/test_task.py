"""The surrogate task on the engine: sharded steps (dp, fsdp) equal the single-device step;
freezing filters select MPP's trainable groups; eval reports persistence beside the model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from jaxfm.data.pipeline import make_dataset
from jaxfm.data.sources import ArraySource
from jaxfm.models.surrogate import AViT, avit_config
from jaxfm.parallel.mesh import make_mesh
from jaxfm.parallel.options import ParallelConfig
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig, trainable_filter
from jaxfm.train.optim import make_optimizer
from jaxfm.train.options import TrainConfig
from jaxfm.train.step import Engine


def _paths(model, filt):
    return {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, filt))}


def test_freeze_filters_select_mpp_groups():
    model = nnx.eval_shape(lambda: AViT(avit_config("smoke"), rngs=nnx.Rngs(0)))
    middle = _paths(model, trainable_filter("middle"))
    assert middle == {"fields/kernel", "fields/bias", "destem/out_kernel", "destem/out_bias"}
    proc = _paths(model, trainable_filter("processor"))
    assert middle < proc and all(p.split("/")[0] in ("fields", "stem", "destem") for p in proc)
    assert any(p.startswith("blocks") for p in _paths(model, trainable_filter("none")))
    with pytest.raises(ValueError, match="unknown freeze option"):
        trainable_filter("all")


def _source(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3, 16, 16, 3)).astype(np.float32) + np.float32(2.0)
    y = (x[:, -1:] + 0.1 * rng.normal(size=(n, 1, 16, 16, 3))).astype(np.float32)
    ids = np.tile(np.array([[0, 5, -1]], np.int32), (n, 1))  # one padding channel
    return ArraySource(
        {"x": x, "y": y, "field_ids": ids, "system": np.zeros((n,), np.int32)}, "synthetic-windows"
    )


def _train(task, tc, mesh, strategy, steps=2):
    tx, sched = make_optimizer(tc)
    engine = Engine(task, tc, tx, sched, mesh, strategy)
    state = engine.init(tc.seed)
    it = iter(make_dataset(_source(), batch_size=tc.batch_size, seed=tc.seed))
    step = engine.train_step()
    losses = []
    for _ in range(steps):
        state, m = step(state, engine.put_batch(next(it)))
        losses.append(float(m["loss"]))
    return state, losses


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, pc", [("dp", ParallelConfig(data=8)), ("fsdp", ParallelConfig(data=2, fsdp=4))]
)
def test_sharded_avit_step_equals_single_device(strategy, pc):
    # layer_scale 1 and no drop-path so every block contributes to the gradient
    task = SurrogateTask(
        SurrogateTaskConfig(avit=avit_config("smoke", layer_scale=1.0)), np.array([[True, False]])
    )
    # SGD, not Adam: Adam divides by |g|, which turns float round-off in parameters whose
    # gradient is ~0 into O(lr) differences; SGD keeps the comparison on the gradients.
    tc = TrainConfig(batch_size=16, lr=1e-2, warmup_steps=0, seed=1, optimizer="sgd")
    one = Mesh(
        np.array(jax.devices()[:1]).reshape(1, 1, 1, 1), ("data", "fsdp", "tensor", "expert")
    )
    ref_state, ref = _train(task, tc, one, "dp")
    state, got = _train(task, tc, make_mesh(pc), strategy)
    # same math, different reduction order across devices: float32 round-off only
    np.testing.assert_allclose(got, ref, rtol=2e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jax.device_get(state["params"]),
        jax.device_get(ref_state["params"]),
    )


def test_eval_metrics_report_persistence_and_skip_padding():
    task = SurrogateTask(SurrogateTaskConfig(avit=avit_config("smoke")))
    model = task.build_model(nnx.Rngs(0))
    src = _source(4)
    batch = {
        k: jnp.asarray(np.stack([src[i][k] for i in range(4)]))
        for k in ("x", "y", "field_ids", "system")
    }
    m = nnx.jit(task.eval_metrics)(model, batch)
    # untrained delta model = persistence; the zero padding channel (NRMSE 0/0) is skipped
    assert np.isfinite(float(m["nrmse"]))
    np.testing.assert_allclose(float(m["nrmse"]), float(m["persistence_nrmse"]), rtol=1e-4)
    x, y = np.asarray(batch["x"][:, -1, ..., :2], np.float64), np.asarray(batch["y"][:, 0, ..., :2])
    want = np.sqrt(((x - y) ** 2).mean(axis=(1, 2)) / (y**2).mean(axis=(1, 2))).mean()
    np.testing.assert_allclose(float(m["persistence_nrmse"]), want, rtol=1e-4)


def test_unrolled_loss_feeds_the_prediction_back():
    """unroll = 2: the mean of the next-frame loss and the loss of the frame after, predicted
    from the window that ends with the model's own first prediction (written out by hand)."""
    from jaxfm.models.fno import FNO, FNOConfig
    from jaxfm.tasks.surrogate.metrics import surrogate_loss

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 3, 16, 16, 2)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(2, 2, 16, 16, 2)), jnp.float32)
    batch = {"x": x, "y": y, "field_ids": jnp.array([[0, 1]] * 2), "system": jnp.zeros(2, int)}
    cfg = SurrogateTaskConfig(
        arch="fno", fno=FNOConfig(n_channels=2, n_steps_input=3, width=8, modes=4, depth=1)
    )
    model = FNO(dataclasses.replace(cfg.fno, delta=False), rngs=nnx.Rngs(0))
    per = jnp.zeros((2, 2), bool)
    p1 = model(x, batch["field_ids"], periodic=per)
    p2 = model(jnp.concatenate([x[:, 1:], p1[:, None]], 1), batch["field_ids"], periodic=per)
    want = (surrogate_loss(p1, y[:, 0]) + surrogate_loss(p2, y[:, 1])) / 2
    task = SurrogateTask(dataclasses.replace(cfg, unroll=2))
    got, metrics = task.loss(model, batch, nnx.Rngs(dropout=0))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    one, _ = SurrogateTask(cfg).loss(model, batch, nnx.Rngs(dropout=0))
    np.testing.assert_allclose(float(one), float(surrogate_loss(p1, y[:, 0])), rtol=1e-5)
    with pytest.raises(ValueError, match="model.unroll = 3"):
        SurrogateTask(dataclasses.replace(cfg, unroll=3)).loss(model, batch, nnx.Rngs(0))
