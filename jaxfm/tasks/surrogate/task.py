"""The training task of the next-step PDE surrogates (AViT, FNO, U-Net) for ``jaxfm.train.run``.

Batches follow the physics-data contract (``jaxfm.data.windows`` / ``jaxfm.data.mixture``):
``x (B, T_in, H, W, C)``, ``y (B, n_out, H, W, C)`` (the first target frame is scored),
``field_ids (B, C)`` (-1 = padding channel), ``system (B,)`` and optionally ``field_mask``.
Boundary conditions come from a per-system table (``periodic[system] = (H periodic, W
periodic)``), so a batch may mix systems.

Loss: MPP's normalised MSE per sample and field by default (``nmse``), or ``increment``
(relative to persistence's), ``mse`` / ``l1``.
Evaluation reports NRMSE, VRMSE and RMSE of the model and of the persistence baseline
(copy the last input frame) on the same windows, so every number has its control beside it.
The engine scores through :meth:`SurrogateTask.eval_examples` (one row per window) and
:meth:`SurrogateTask.eval_summary`: per system, per field within a system, and the headline
``nrmse`` (``loss``, ...) = the mean over systems of the per-system means
(:func:`jaxfm.tasks.surrogate.metrics.system_summary`), so a checkpoint ranked by
``eval/loss`` or ``eval/nrmse`` is ranked by every system alike.

Freezing (MPP's fine-tuning options, ``models/avit.py``): ``none`` trains everything;
``middle`` only the field embedding and the per-field output kernel/bias (MPP ``frozen``);
``processor`` also the stem and de-stem (MPP ``less_frozen``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfm.data.fields import default_field_registry, default_system_registry
from jaxfm.models.fno import FNO, FNOConfig
from jaxfm.models.surrogate import AViT, AViTConfig
from jaxfm.models.unet import UNet, UNetConfig
from jaxfm.tasks.surrogate.metrics import (
    field_loss,
    masked_mean,
    nrmse,
    rmse,
    surrogate_loss,
    system_summary,
    vrmse,
)

FREEZE = ("none", "middle", "processor")


@dataclasses.dataclass(frozen=True)
class SurrogateTaskConfig:
    """What to train and how to score it."""

    arch: Literal["avit", "fno", "unet"] = "avit"
    """Architecture: avit (MPP AViT), fno or unet (baselines)."""
    avit: AViTConfig = dataclasses.field(default_factory=AViTConfig)
    """AViT settings (used when arch = avit)."""
    fno: FNOConfig = dataclasses.field(default_factory=FNOConfig)
    """FNO settings (used when arch = fno)."""
    unet: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    """U-Net settings (used when arch = unet)."""
    loss: Literal["nmse", "increment", "mse", "l1"] = "nmse"
    """Training loss: MPP's normalised MSE, the MSE relative to persistence's (increment),
    plain MSE, or L1 (jaxfm.tasks.surrogate.metrics.surrogate_loss)."""
    freeze: Literal["none", "middle", "processor"] = "none"
    """Train everything, only embeddings + output head (middle), or also stem/de-stem."""
    unroll: int = 1
    """Autoregressive steps of the training loss: 1 scores the next frame (MPP); k > 1 feeds
    the model's own predictions back for k steps (gradient through them) and averages the
    k losses, so training sees the errors a rollout feeds back. The training windows then
    carry k target frames; evaluation is unchanged."""


def trainable_filter(freeze: str):
    """The NNX filter of the parameters trained under ``freeze``."""
    if freeze == "none":
        return nnx.Param
    heads = [
        nnx.PathContains("fields"),
        nnx.PathContains("out_kernel"),
        nnx.PathContains("out_bias"),
    ]
    if freeze == "processor":
        heads += [nnx.PathContains("stem"), nnx.PathContains("destem")]
    elif freeze != "middle":
        raise ValueError(f"unknown freeze option {freeze!r}; choose one of {FREEZE}")
    return nnx.All(nnx.Param, nnx.Any(*heads))


def build_surrogate(cfg: SurrogateTaskConfig, rngs: nnx.Rngs) -> nnx.Module:
    """The model named by ``cfg.arch``."""
    if cfg.arch == "avit":
        return AViT(cfg.avit, rngs=rngs)
    if cfg.arch == "fno":
        return FNO(cfg.fno, rngs=rngs)
    if cfg.arch == "unet":
        return UNet(cfg.unet, rngs=rngs)
    raise ValueError(f"unknown surrogate arch {cfg.arch!r}; choose avit, fno or unet")


class SurrogateTask:
    """Next-step prediction task (see module docstring)."""

    def __init__(
        self,
        cfg: SurrogateTaskConfig,
        periodic_by_system: np.ndarray | None = None,
        *,
        system_names: Sequence[str] | None = None,
        field_names: Sequence[str] | None = None,
    ):
        """Args:
        cfg: model, loss and freezing.
        periodic_by_system: (n_systems, 2) bool, system id -> (H, W) periodic; None: all
          axes bounded.
        system_names, field_names: id -> name of the run's registries, which name the eval
          metrics (default: the built-in registries; a run on files may have more).
        """
        self.cfg = cfg
        self.system_names = tuple(system_names or default_system_registry().names)
        self.field_names = tuple(field_names or default_field_registry().names)
        self.periodic_table = (
            None
            if periodic_by_system is None
            else np.asarray(periodic_by_system, bool).reshape(-1, 2)
        )
        self.trainable = trainable_filter(cfg.freeze)

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """A freshly initialised surrogate."""
        return build_surrogate(self.cfg, rngs)

    def checkpoint_task(self, meta: dict) -> SurrogateTask | None:
        """The task of an ``init_from`` checkpoint's model when it has fewer field rows.

        Fine-tuning on fields the pretraining never had grows ``model.avit.n_fields``; the
        checkpoint is then restored with its own vocabulary and :meth:`adapt_model` appends
        the new rows. None (restore as is) for an equal vocabulary or a non-AViT model.

        Args:
            meta: the checkpoint's metadata (``meta["config"]`` is its run's config).
        """
        saved = meta.get("config", {}).get("model", {})
        if self.cfg.arch != "avit" or saved.get("arch", "avit") != "avit":
            return None
        n_saved = int(saved.get("avit", {}).get("n_fields", self.cfg.avit.n_fields))
        n_run = self.cfg.avit.n_fields
        if n_saved > n_run:
            raise ValueError(
                f"the checkpoint's model has {n_saved} field rows but model.avit.n_fields = "
                f"{n_run}; set model.avit.n_fields to at least {n_saved}"
            )
        if n_saved == n_run:
            return None
        avit = dataclasses.replace(self.cfg.avit, n_fields=n_saved)
        return SurrogateTask(
            dataclasses.replace(self.cfg, avit=avit),
            self.periodic_table,
            system_names=self.system_names,
            field_names=self.field_names,
        )

    def adapt_model(self, model: nnx.Module, seed: int = 0) -> None:
        """Grows ``model``'s field vocabulary to this task's, in place: the stored rows are
        kept and new ones appended (``AViT.expand_fields``; a delta head starts them at
        persistence)."""
        extra = self.cfg.avit.n_fields - model.n_fields
        if extra > 0:
            model.expand_fields(extra, rngs=nnx.Rngs(seed))

    def _periodic(self, batch) -> jax.Array:
        b = batch["x"].shape[0]
        if self.periodic_table is None:
            return jnp.zeros((b, 2), bool)
        return jnp.asarray(self.periodic_table)[batch["system"].reshape(b)]

    @staticmethod
    def _ids(batch) -> jax.Array:
        ids = batch["field_ids"]
        b, c = batch["x"].shape[0], batch["x"].shape[-1]
        return jnp.broadcast_to(ids.reshape((-1, c)), (b, c)).astype(jnp.int32)

    def predict(self, model, x, field_ids, periodic, *, deterministic=True, rngs=None):
        """Next frame (B, H, W, C) from the window ``x`` (B, T, H, W, C)."""
        return model(x, field_ids, periodic=periodic, deterministic=deterministic, rngs=rngs)

    def predict_batch(self, model, batch):
        """Deterministic next frame of every window of ``batch`` (what a teacher provides)."""
        return self.predict(model, batch["x"], self._ids(batch), self._periodic(batch))

    def loss(self, model, batch, rngs):
        """(loss, metrics) of one training micro-batch (``unroll`` steps; ``nrmse``: the
        first step's)."""
        ids, periodic = self._ids(batch), self._periodic(batch)
        steps = self.cfg.unroll
        if steps < 1 or batch["y"].shape[1] < steps:
            raise ValueError(
                f"model.unroll = {steps} needs >= 1 and at most the batch's "
                f"{batch['y'].shape[1]} target frames"
            )
        window, valid, losses = batch["x"], ids >= 0, []
        for k in range(steps):
            pred = self.predict(model, window, ids, periodic, deterministic=False, rngs=rngs)
            target = batch["y"][:, k]
            losses.append(
                surrogate_loss(pred, target, kind=self.cfg.loss, valid=valid, last=window[:, -1])
            )
            if k == 0:
                first = masked_mean(nrmse(pred, target, eps=1e-7), valid)
            window = jnp.concatenate([window[:, 1:], pred[:, None].astype(window.dtype)], axis=1)
        return sum(losses) / steps, {"nrmse": first}

    def eval_metrics(self, model, batch):
        """Model and persistence errors (NRMSE, VRMSE, RMSE) of one batch, averaged over its
        windows and valid fields (for scoring a single batch by hand; the engine uses
        :meth:`eval_examples`)."""
        rows = self.eval_examples(model, batch)
        valid = rows["field_ids"] >= 0
        return {
            k: masked_mean(v, valid) for k, v in rows.items() if v.ndim == 2 and k != "field_ids"
        }

    def eval_examples(self, model, batch):
        """Per window and field (B, C): loss, NRMSE, VRMSE, RMSE of the model and of
        persistence; plus the labels ``system (B,)`` and ``field_ids (B, C)``."""
        ids = self._ids(batch)
        pred = self.predict(model, batch["x"], ids, self._periodic(batch))
        target, last = batch["y"][:, 0], batch["x"][:, -1]
        out = {"loss": field_loss(pred, target, kind=self.cfg.loss, last=last)}
        for name, fn in (("nrmse", nrmse), ("vrmse", vrmse), ("rmse", rmse)):
            out[name] = fn(pred, target)
            out[f"persistence_{name}"] = fn(last, target)
        b = ids.shape[0]
        out["system"] = jnp.broadcast_to(batch["system"].reshape(-1), (b,)).astype(jnp.int32)
        out["field_ids"] = ids
        return out

    def eval_summary(self, values):
        """Per system, per field and over-systems means of :meth:`eval_examples`' rows."""
        return system_summary(values, self.system_names, self.field_names)
