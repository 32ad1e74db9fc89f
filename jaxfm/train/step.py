"""Train state, abstract initialisation, and the jit-compiled train / eval steps.

The train state is a plain dict pytree, so Orbax, ``jit`` shardings and ``shard_map`` specs
all see the same structure::

    {"step": int32[], "params": trainable params, "frozen": other params,
     "rest": other model variables, "opt_state": optax state, "rng": uint32[2] key data}

Parameters are pure dicts (``nnx.to_pure_dict``); the model is rebuilt inside the step with
``nnx.merge(graphdef, ...)``. Initialisation is abstract first (``nnx.eval_shape``), which
gives shapes and logical axis names; the rule table turns those into shardings; then
``jit(init, out_shardings=...)`` creates every parameter directly on its devices, so a model
larger than one device's memory never exists in one piece.

Mixed precision: parameters and optimizer state stay float32; with ``compute_dtype=bfloat16``
floating parameters and inputs are cast inside the loss, so gradients arrive in float32
through the cast's transpose.

Gradient accumulation: the batch is split into ``grad_accum`` micro-batches scanned with
``lax.scan``; their mean gradient equals the gradient of the whole batch's mean loss.

The ``shard_map`` step is the per-device (pmap-style) program: each device computes its
local loss, the loss is ``pmean``-ed over the batch axes *before* differentiation (the
gradient of a pmean-ed loss is already the global mean gradient; pmean-ing gradients of
local losses would count replicated parameters N times).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfm.nn.aux import pop_aux
from jaxfm.nn.params import cast_floats, fp32_mask
from jaxfm.parallel.mesh import BATCH_AXES, batch_sharding, replicated
from jaxfm.parallel.rules import state_shardings
from jaxfm.train.optim import make_optimizer
from jaxfm.train.options import TrainConfig
from jaxfm.train.task import Task, trainable_filter

State = dict[str, Any]
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def split_model(model: nnx.Module, task: Task):
    """(graphdef, trainable, frozen, rest) as nnx States."""
    return nnx.split(model, trainable_filter(task), nnx.Param, ...)


class Engine:
    """Compiled functions for one (task, optimizer, mesh) combination.

    Args:
      task: the model family (see :class:`jaxfm.train.task.Task`).
      cfg: the ``train`` config section.
      tx: the optax optimizer, or None to build it from ``cfg`` (then ``Fp32Param``
        parameters are excluded from weight decay); ``schedule`` gives the logged rate.
      mesh: the device mesh; ``strategy`` picks the sharding rule table.
    """

    def __init__(
        self,
        task: Task,
        cfg: TrainConfig,
        tx: optax.GradientTransformation | None,
        schedule: Callable | None,
        mesh: Mesh,
        strategy: str,
    ):
        self.task, self.cfg = task, cfg
        self.mesh, self.strategy = mesh, strategy
        self.dtype = _DTYPES[cfg.compute_dtype]
        abstract_model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(cfg.seed)))
        self.graphdef, a_params, a_frozen, a_rest = split_model(abstract_model, task)
        shard = {
            "params": state_shardings(a_params, mesh, strategy),
            "frozen": state_shardings(a_frozen, mesh, strategy),
            "rest": jax.tree.map(lambda _: replicated(mesh), nnx.to_pure_dict(a_rest)),
        }
        abstract_params = nnx.to_pure_dict(a_params)
        self.keep_fp32 = {"params": fp32_mask(a_params), "frozen": fp32_mask(a_frozen)}
        if tx is None:
            tx, schedule = make_optimizer(cfg, no_decay=self.keep_fp32["params"])
        self.tx, self.schedule = tx, schedule
        a_opt = jax.eval_shape(tx.init, abstract_params)
        shard["opt_state"] = optax.tree_map_params(
            tx,
            lambda _, s: s,
            a_opt,
            shard["params"],
            transform_non_params=lambda _: replicated(mesh),
        )
        shard["step"] = shard["rng"] = replicated(mesh)
        self.state_sharding: State = shard
        self.abstract_state: State = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            {
                "params": abstract_params,
                "frozen": nnx.to_pure_dict(a_frozen),
                "rest": nnx.to_pure_dict(a_rest),
                "opt_state": a_opt,
                "step": jax.ShapeDtypeStruct((), jnp.int32),
                "rng": jax.ShapeDtypeStruct((2,), jnp.uint32),
            },
            shard,
        )
        self._train_step = None
        self._eval_steps: dict[bool, Callable] = {}

    # ------------------------------------------------------------------------------- init

    def init(self, seed: int) -> State:
        """A fresh train state, created directly with its shardings."""

        def _init():
            model = self.task.build_model(nnx.Rngs(seed))
            _, params, frozen, rest = split_model(model, self.task)
            params = nnx.to_pure_dict(params)
            return {
                "params": params,
                "frozen": nnx.to_pure_dict(frozen),
                "rest": nnx.to_pure_dict(rest),
                "opt_state": self.tx.init(params),
                "step": jnp.zeros((), jnp.int32),
                "rng": jax.random.key_data(jax.random.key(seed)).astype(jnp.uint32),
            }

        return jax.jit(_init, out_shardings=self.state_sharding)()

    def model(self, state: State) -> nnx.Module:
        """The NNX model holding ``state``'s parameters (for evaluation and inspection)."""
        return nnx.merge(self.graphdef, state["params"], state["frozen"], state["rest"])

    # ------------------------------------------------------------------------------- loss

    def _loss(self, params, frozen, rest, batch, key):
        model = nnx.merge(
            self.graphdef,
            cast_floats(params, self.dtype, self.keep_fp32["params"]),
            cast_floats(frozen, self.dtype, self.keep_fp32["frozen"]),
            rest,
        )
        batch = cast_floats(batch, self.dtype)
        loss, metrics = self.task.loss(model, batch, nnx.Rngs(dropout=key))
        aux_loss, aux_metrics = pop_aux(model)
        _, _, _, new_rest = split_model(model, self.task)
        total = loss.astype(jnp.float32) + aux_loss
        metrics = {
            **{k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()},
            **{k: jnp.mean(jnp.asarray(v, jnp.float32)) for k, v in aux_metrics.items()},
            "task_loss": loss.astype(jnp.float32),
        }
        return total, (metrics, nnx.to_pure_dict(new_rest))

    def _grads(self, state: State, batch, key):
        """Mean loss, gradients and metrics over ``grad_accum`` micro-batches."""
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        k = self.cfg.grad_accum
        if k == 1:
            (loss, (metrics, rest)), grads = grad_fn(
                state["params"], state["frozen"], state["rest"], batch, key
            )
            return loss, grads, metrics, rest
        micro = jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), batch)

        def body(carry, xs):
            grads_acc, rest, i = carry
            mb = xs
            (loss, (metrics, rest)), grads = grad_fn(
                state["params"], state["frozen"], rest, mb, jax.random.fold_in(key, i)
            )
            grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
            return (grads_acc, rest, i + 1), (loss, metrics)

        zeros = jax.tree.map(jnp.zeros_like, state["params"])
        (grads, rest, _), (losses, metrics) = jax.lax.scan(
            body, (zeros, state["rest"], jnp.int32(0)), micro
        )
        grads = jax.tree.map(lambda g: g / k, grads)
        return losses.mean(), grads, jax.tree.map(jnp.mean, metrics), rest

    def _apply(self, state: State, loss, grads, metrics, rest) -> tuple[State, dict]:
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {
            **state,
            "params": params,
            "opt_state": opt_state,
            "rest": rest,
            "step": state["step"] + 1,
        }
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": jnp.asarray(self.schedule(state["step"]), jnp.float32),
        }
        return new, metrics

    # ------------------------------------------------------------------------------- steps

    def _step_key(self, state: State):
        return jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

    def train_step(self) -> Callable[[State, dict], tuple[State, dict]]:
        """The compiled ``(state, batch) -> (state, metrics)``; the state is donated."""
        if self._train_step is not None:
            return self._train_step
        if self.cfg.step_impl == "shard_map":
            self._train_step = self._shard_map_step()
            return self._train_step

        def step(state, batch):
            loss, grads, metrics, rest = self._grads(state, batch, self._step_key(state))
            return self._apply(state, loss, grads, metrics, rest)

        self._train_step = jax.jit(
            step, out_shardings=(self.state_sharding, replicated(self.mesh)), donate_argnums=(0,)
        )
        return self._train_step

    def _shard_map_step(self):
        if self.strategy != "dp":
            raise ValueError(
                f"step_impl=shard_map supports strategy 'dp' only, got {self.strategy!r}"
            )
        axes = tuple(a for a in BATCH_AXES if self.mesh.shape[a] > 1) or BATCH_AXES[:1]

        def local(state, batch):
            key = jax.random.fold_in(self._step_key(state), jax.lax.axis_index(axes))

            def global_loss(params, frozen, rest, b, k):
                loss, (metrics, rest) = self._loss(params, frozen, rest, b, k)
                return jax.lax.pmean(loss, axes), (jax.lax.pmean(metrics, axes), rest)

            if self.cfg.grad_accum != 1:
                raise ValueError("step_impl=shard_map does not support grad_accum > 1")
            (loss, (metrics, rest)), grads = jax.value_and_grad(global_loss, has_aux=True)(
                state["params"], state["frozen"], state["rest"], batch, key
            )
            return self._apply(state, loss, grads, metrics, rest)

        def step(state, batch):
            specs_batch = jax.tree.map(lambda _: PartitionSpec(axes), batch)
            specs_state = jax.tree.map(lambda _: PartitionSpec(), state)
            fn = jax.shard_map(
                local,
                mesh=self.mesh,
                in_specs=(specs_state, specs_batch),
                out_specs=(specs_state, PartitionSpec()),
            )
            return fn(state, batch)

        return jax.jit(
            step, out_shardings=(self.state_sharding, replicated(self.mesh)), donate_argnums=(0,)
        )

    def eval_step(self, per_example: bool = False) -> Callable[[State, dict], dict]:
        """The compiled ``(state, batch) -> metrics`` (no gradient, deterministic model).

        ``per_example``: call the task's ``eval_examples`` (values with a leading batch axis,
        kept in their dtype so integer group labels stay exact) instead of ``eval_metrics``.
        """
        if per_example not in self._eval_steps:
            method = "eval_examples" if per_example else "eval_metrics"

            def step(state, batch):
                model = nnx.merge(
                    self.graphdef,
                    cast_floats(state["params"], self.dtype, self.keep_fp32["params"]),
                    cast_floats(state["frozen"], self.dtype, self.keep_fp32["frozen"]),
                    state["rest"],
                )
                metrics = getattr(self.task, method)(model, cast_floats(batch, self.dtype))
                pop_aux(model)
                return {k: _eval_output(v) for k, v in metrics.items()}

            self._eval_steps[per_example] = jax.jit(step, out_shardings=replicated(self.mesh))
        return self._eval_steps[per_example]

    # ------------------------------------------------------------------------------- data

    def put_batch(self, local_batch: dict) -> dict:
        """This process's rows -> global arrays sharded over the batch axes (explicit copy)."""

        def put(x):
            sharding = batch_sharding(self.mesh, x.ndim)
            return jax.make_array_from_process_local_data(sharding, x)

        return jax.tree.map(put, local_batch)

    def param_sharding(self) -> dict[str, NamedSharding]:
        """Shardings of the trainable parameters (pure dict)."""
        return self.state_sharding["params"]


def _eval_output(v) -> jax.Array:
    """Floating eval outputs in float32; integer and boolean labels unchanged."""
    v = jnp.asarray(v)
    keep = jnp.issubdtype(v.dtype, jnp.integer) or v.dtype == jnp.bool_
    return v if keep else v.astype(jnp.float32)
