"""Distillation: only the student trains, the loss is the stated formula, and it learns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from jaxfm.data.lorenz import flow_map_splits
from jaxfm.data.pipeline import make_dataset
from jaxfm.data.sources import ArraySource
from jaxfm.models.regressor import RegressorConfig
from jaxfm.tasks.distill.task import DistillTask
from jaxfm.tasks.regression.task import RegressionTask
from jaxfm.train.optim import make_optimizer
from jaxfm.train.options import TrainConfig
from jaxfm.train.step import Engine

TEACHER = RegressionTask(RegressorConfig(hidden=64, depth=2))
STUDENT = RegressionTask(RegressorConfig(hidden=16, depth=1))


@pytest.fixture(scope="module")
def lorenz_data():
    """(train source, held-out dict): 1024 training pairs, 256 held-out pairs."""
    train, held, _ = flow_map_splits(16, 4, 64, seed=0)
    return ArraySource(train, "lorenz-distill-train"), held


def _mesh():
    return Mesh(
        np.array(jax.devices()[:1]).reshape(1, 1, 1, 1), ("data", "fsdp", "tensor", "expert")
    )


def _train(task, source, steps, tc):
    tx, sched = make_optimizer(tc)
    engine = Engine(task, tc, tx, sched, _mesh(), "dp")
    state = engine.init(tc.seed)
    it = iter(make_dataset(source, batch_size=tc.batch_size, seed=tc.seed))
    step = engine.train_step()
    for _ in range(steps):
        state, _ = step(state, engine.put_batch(next(it)))
    return engine, state


def _np(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _teacher_state(seed=7):
    return nnx.state(TEACHER.build_model(nnx.Rngs(seed)))


def test_only_student_trains(lorenz_data):
    teacher_state = _teacher_state()
    task = DistillTask(STUDENT, TEACHER, teacher_state, alpha=0.5)
    tc = TrainConfig(batch_size=32, lr=1e-2, warmup_steps=0, seed=3)
    tx, sched = make_optimizer(tc)
    engine = Engine(task, tc, tx, sched, _mesh(), "dp")
    state0 = _np(engine.init(tc.seed))
    # The teacher sits in the frozen state with the loaded weights; the student is trainable.
    assert set(state0["params"]) == {"student"} and "teacher" in state0["frozen"]
    jax.tree.map(
        np.testing.assert_array_equal,
        state0["frozen"]["teacher"],
        _np(nnx.to_pure_dict(teacher_state)),
    )
    _, state = _train(task, lorenz_data[0], 3, tc)
    state = _np(state)
    # Bit-identical teacher, moved student.
    jax.tree.map(
        np.testing.assert_array_equal, state["frozen"]["teacher"], state0["frozen"]["teacher"]
    )
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: np.abs(a - b).max(), state["params"], state0["params"])
    )
    assert max(moved) > 1e-4


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_equals_formula(lorenz_data, alpha):
    task = DistillTask(STUDENT, TEACHER, _teacher_state(), alpha=alpha)
    model = task.build_model(nnx.Rngs(0))
    batch = {k: jnp.asarray(v[:64]) for k, v in lorenz_data[1].items()}
    loss, metrics = task.loss(model, batch, nnx.Rngs(0))
    s = np.asarray(model.student(batch["x"]), np.float64)
    t = np.asarray(model.teacher(batch["x"]), np.float64)
    y = np.asarray(batch["y"], np.float64)
    want = alpha * np.mean((s - t) ** 2) + (1 - alpha) * np.mean((s - y) ** 2)
    # float32 forward and means over 192 values: ~1e-6 relative.
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["distill_mse"]), np.mean((s - t) ** 2), rtol=1e-5)
    # No gradient reaches the teacher (stop_gradient), even if it were trainable.
    grads = nnx.grad(lambda m: task.loss(m, batch, nnx.Rngs(0))[0])(model)
    teacher_g = jax.tree.leaves(nnx.to_pure_dict(grads)["teacher"])
    assert all(float(jnp.abs(g).max()) == 0.0 for g in teacher_g)


def test_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        DistillTask(STUDENT, TEACHER, None, alpha=1.5)


def _eval_mse(engine, state, data, which):
    model = engine.model(state)
    net = getattr(model, which) if which else model
    return float(jnp.mean((net(jnp.asarray(data["x"])) - jnp.asarray(data["y"])) ** 2))


@pytest.mark.slow  # ~17 s: three short trainings (teacher, distilled, scratch)
def test_distilled_student_learns_close_to_teacher(lorenz_data):
    train_src, held = lorenz_data
    tc = TrainConfig(batch_size=64, lr=3e-3, warmup_steps=0, seed=0)
    t_engine, t_state = _train(TEACHER, train_src, 300, tc)
    teacher_mse = _eval_mse(t_engine, t_state, held, None)
    teacher_state = nnx.state(t_engine.model(t_state))
    task = DistillTask(STUDENT, TEACHER, teacher_state, alpha=0.7)
    d_engine, d_state0 = _train(task, train_src, 0, tc)
    init_mse = _eval_mse(d_engine, d_state0, held, "student")
    d_engine, d_state = _train(task, train_src, 150, tc)
    distilled_mse = _eval_mse(d_engine, d_state, held, "student")
    s_engine, s_state = _train(STUDENT, train_src, 150, tc)
    scratch_mse = _eval_mse(s_engine, s_state, held, None)
    print(
        f"teacher {teacher_mse:.3e} init {init_mse:.3e} distilled {distilled_mse:.3e} "
        f"scratch {scratch_mse:.3e}"
    )
    # Measured (2 cores): teacher 3.6e-5, init (= persistence, zero-init residual head)
    # 1.3e-2, distilled 1.10e-3, scratch 1.11e-3. The small student is capacity-bound, so the
    # teacher's targets match the labels' value but do not beat them here; the bounds check
    # that it learned (>6x below persistence) and is no worse than data-only training.
    assert distilled_mse < 0.15 * init_mse
    assert distilled_mse < 1.2 * scratch_mse
    assert teacher_mse < distilled_mse
