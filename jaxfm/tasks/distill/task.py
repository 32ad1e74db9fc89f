"""Knowledge distillation for regression models: a student fitted to a frozen teacher.

Design note. :class:`DistillTask` wraps two ordinary tasks (any task whose model maps a batch
to predictions). Its model is a :class:`Distilled` container holding ``student`` and
``teacher``; the engine's ``trainable`` filter selects only the student's parameters
(``nnx.All(nnx.Param, nnx.PathContains("student"))``), so the teacher sits in the engine's
frozen state: no gradient, no optimizer slots, bit-identical through training and saved with
every checkpoint (a resumed run needs no teacher workdir). The loss on a batch is

    L = alpha * mean((f_s(batch) - stop_gradient(f_t(batch)))**2) + (1 - alpha) * L_data(f_s)

where L_data is the student task's own loss. For regression the teacher's predictions play
the role of Hinton et al.'s soft targets (arXiv 1503.02531): they are a smooth, noise-free
version of the labels that the student can match everywhere the batch goes. The teacher's
weights come from a finished run's workdir through :func:`load_teacher`.

Shapes: whatever ``predict(model, batch)`` returns, identical for student and teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfm.train.loop import load_model
from jaxfm.train.task import Task

Predict = Callable[[nnx.Module, dict[str, jax.Array]], jax.Array]


def predict_x(model: nnx.Module, batch: dict[str, jax.Array]) -> jax.Array:
    """The default prediction: ``model(batch["x"])`` (the regressor's call)."""
    return model(batch["x"])


class Distilled(nnx.Module):
    """A student and its frozen teacher; calling it calls the student."""

    def __init__(self, student: nnx.Module, teacher: nnx.Module):
        self.student = student
        self.teacher = teacher

    def __call__(self, *args, **kwargs):
        return self.student(*args, **kwargs)


def load_teacher(workdir: str, task: Task, cfg: Any) -> nnx.State:
    """The trained teacher's state (parameters and buffers) from a run's newest checkpoint.

    Args:
      workdir: the teacher run's workdir.
      task: the task that trained it.
      cfg: that run's config (e.g. ``jaxfm.config.load_json(Cfg, WORKDIR/config.json)``).
    """
    return jax.device_get(nnx.state(load_model(workdir, task, cfg)))


class DistillTask:
    """Distil ``teacher_task``'s trained model into ``student_task``'s model.

    Args:
      student_task: builds the student and gives the data loss and evaluation metrics.
      teacher_task: builds the teacher's architecture.
      teacher_state: the trained teacher's ``nnx.State`` (see :func:`load_teacher`); ``None``
        leaves the teacher at its random initialisation (only useful in tests).
      alpha: weight of the match-the-teacher term, in [0, 1].
      predict: ``predict(model, batch) -> predictions`` for both models.
    """

    trainable = nnx.All(nnx.Param, nnx.PathContains("student"))

    def __init__(
        self,
        student_task: Task,
        teacher_task: Task,
        teacher_state: nnx.State | None,
        *,
        alpha: float = 0.5,
        predict: Predict = predict_x,
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"DistillTask: alpha must lie in [0, 1], got {alpha}")
        self.student_task, self.teacher_task = student_task, teacher_task
        self.teacher_state, self.alpha, self.predict = teacher_state, alpha, predict
        if hasattr(student_task, "eval_examples") and hasattr(teacher_task, "eval_examples"):
            # Scored as the student is (exact, broken down by its own summary), not by
            # batch means: the engine looks for these two names.
            self.eval_examples = self._eval_examples
            self.eval_summary = getattr(student_task, "eval_summary", None) or _mean_over_rows

    def build_model(self, rngs: nnx.Rngs) -> Distilled:
        """Student at random init, teacher with the loaded weights."""
        student = self.student_task.build_model(rngs)
        teacher = self.teacher_task.build_model(rngs)
        if self.teacher_state is not None:
            nnx.update(teacher, self.teacher_state)
        return Distilled(student, teacher)

    def loss(self, model: Distilled, batch, rngs):
        """alpha * MSE(student, stop_gradient(teacher)) + (1 - alpha) * data loss."""
        data_loss, metrics = self.student_task.loss(model.student, batch, rngs)
        y_t = jax.lax.stop_gradient(self.predict(model.teacher, batch).astype(jnp.float32))
        y_s = self.predict(model.student, batch).astype(jnp.float32)
        kd = jnp.mean((y_s - y_t) ** 2)
        loss = self.alpha * kd + (1.0 - self.alpha) * data_loss
        return loss, {**metrics, "data_loss": data_loss, "distill_mse": kd}

    def _eval_examples(self, model: Distilled, batch):
        """The student's per-example rows, the teacher's loss and the student-teacher gap
        per example (summarised by the student task's ``eval_summary``)."""
        out = dict(self.student_task.eval_examples(model.student, batch))
        out["teacher_loss"] = self.teacher_task.eval_examples(model.teacher, batch)["loss"]
        gap = self.predict(model.student, batch).astype(jnp.float32) - self.predict(
            model.teacher, batch
        ).astype(jnp.float32)
        out["distill_mse"] = jnp.mean(gap**2, axis=tuple(range(1, gap.ndim)))
        return out

    def eval_metrics(self, model: Distilled, batch):
        """The student's own metrics, the teacher's loss and the student-teacher gap."""
        out = dict(self.student_task.eval_metrics(model.student, batch))
        out["teacher_loss"] = self.teacher_task.eval_metrics(model.teacher, batch)["loss"]
        gap = self.predict(model.student, batch).astype(jnp.float32) - self.predict(
            model.teacher, batch
        ).astype(jnp.float32)
        out["distill_mse"] = jnp.mean(gap**2)
        return out


def _mean_over_rows(values: dict) -> dict[str, float]:
    """The mean of every floating per-example value (the engine's default summary)."""
    from jaxfm.train.loop import mean_over_examples

    return mean_over_examples(values)
