"""Learning-rate schedules and the optimizer, built from the ``train`` config section.

* Warm-up: linear from 0 to ``lr`` over ``warmup_steps``; then cosine / linear decay to
  ``lr * min_lr_ratio`` at ``steps``, or constant.
* AdamW with decoupled weight decay masked to matrices (ndim >= 2): norms, biases, scales
  and embeddings' per-channel vectors are never decayed (a decayed LayerNorm scale drifts
  to zero for no benefit).
* Global-norm clipping before the update.
"""

from __future__ import annotations

import functools

import jax
import optax

from jaxfm.train.options import TrainConfig


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
    """The learning rate as a function of the step."""
    warmup = max(int(cfg.warmup_steps), 0)
    decay_steps = max(cfg.steps - warmup, 1)
    end = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.lr, end, decay_steps)
    elif cfg.schedule == "constant":
        decay = optax.constant_schedule(cfg.lr)
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose cosine, linear or constant")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


def decay_mask(params, no_decay=None):
    """True for parameters that get weight decay: matrices and higher-rank kernels, except
    those marked True in ``no_decay`` (a matching tree, e.g. float32-only SSM parameters)."""
    if no_decay is None:
        return jax.tree.map(lambda p: p.ndim >= 2, params)
    return jax.tree.map(lambda p, skip: p.ndim >= 2 and not skip, params, no_decay)


def make_optimizer(
    cfg: TrainConfig, no_decay=None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule) for ``cfg``; the optimizer clips, then updates.

    Args:
      cfg: the ``train`` config section.
      no_decay: optional tree of bools matching the parameters; True leaves never decay.
    """
    schedule = make_schedule(cfg)
    mask = functools.partial(decay_mask, no_decay=no_decay)
    if cfg.optimizer == "adamw":
        opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=mask)
    elif cfg.optimizer == "sgd":
        opt = optax.chain(
            optax.add_decayed_weights(cfg.weight_decay, mask=mask),
            optax.sgd(schedule, momentum=cfg.b1 or None),
        )
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw or sgd")
    if cfg.clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt, schedule
