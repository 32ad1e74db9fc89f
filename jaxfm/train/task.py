"""The contract between a model family and the training engine.

A *task* knows how to build its model and how to score it on a batch; the engine knows
everything else (sharding, precision, accumulation, checkpoints, logging). Keeping this
boundary narrow is what lets one loop train surrogates, contrastive encoders and language
models alike.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
from flax import nnx


@runtime_checkable
class Task(Protocol):
    """What the engine needs from a model family.

    Attributes (optional):
      trainable: NNX filter of the parameters to train (default ``nnx.Param``); the others
        are frozen. The same filter selects the gradient and the optimizer state.
      checkpoint_task(meta) / adapt_model(model): for ``init_from`` checkpoints whose model
        differs from this task's in a way the task can bridge (see
        ``jaxfm.train.loop._load_params``).
    """

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """A freshly initialised model (called under ``nnx.eval_shape`` and ``jit``)."""
        ...

    def loss(
        self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(scalar loss, scalar metrics) for a training micro-batch; ``rngs.dropout`` exists."""
        ...

    def eval_metrics(self, model: nnx.Module, batch: dict[str, jax.Array]) -> dict[str, Any]:
        """Scalar metrics of one evaluation batch (averaged over batches by the engine)."""
        ...


@runtime_checkable
class ExampleEval(Protocol):
    """Optional, for a task whose eval must be exact and broken down (e.g. per system).

    A task with ``eval_examples`` is evaluated through it instead of ``eval_metrics``: the
    engine runs it on every eval batch (jit, deterministic model), keeps each example's row
    once (padding of the last batch dropped), and hands all rows to ``eval_summary`` on the
    host. Means over batches cannot weigh a short last batch or a group split across batches
    correctly; rows with their group labels can. ``eval_summary`` is optional (default: the
    mean of every floating value over the examples).
    """

    def eval_examples(self, model: nnx.Module, batch: dict[str, jax.Array]) -> dict[str, Any]:
        """Name -> array with a leading batch axis: per-example values and group labels
        (e.g. ``system (B,)``, ``field_ids (B, C)``), integer labels kept as integers."""
        ...

    def eval_summary(self, values: dict[str, np.ndarray]) -> dict[str, float]:
        """The reported metrics (without the ``eval/`` prefix) from the rows of every example
        of the eval set (host NumPy arrays, ``values[k][i]`` = example i)."""
        ...


def trainable_filter(task: Task):
    """The task's trainable-parameter filter, ``nnx.Param`` by default."""
    return getattr(task, "trainable", nnx.Param)
