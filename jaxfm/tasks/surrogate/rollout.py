"""Autoregressive rollout with a sliding context, and errors over rollout windows.

A next-step surrogate f maps T input frames to the next one. Rolled out, its own predictions
become its inputs: with context (x_1..x_T),

    x_{T+1} = f(x_1..x_T),  x_{T+2} = f(x_2..x_{T+1}),  ...

so after T steps the model sees none of the true frames. One-step error (teacher forcing)
says little about that regime (MPP reports one-step only; MPP issue #5 asks about rollouts;
PDEBench issue #41: metrics that include the context frames are optimistic). We score only
predicted frames and summarise per-step errors over windows of steps 1, 2-5, 6-12 and 13-30,
truncated to what the trajectory allows. 6-12 and 13-30 are The Well's rollout windows (its
benchmark tables, ``docs/benchmarks.md``: "time windows (6:12) and (13:30)", beside the
one-step error); 2-5 fills the gap for short trajectories.

Shapes: context (B, T, *spatial, C) -> predictions (B, S, *spatial, C) for S steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxfm.tasks.surrogate.metrics import METRICS

WINDOWS: tuple[tuple[int, int], ...] = ((1, 1), (2, 5), (6, 12), (13, 30))
"""Rollout windows (first step, last step), 1-based, inclusive."""

ROLLOUT_STEPS = 30
"""Default rollout length: the end of the last window."""


def rollout(
    step_fn: Callable[[jax.Array], jax.Array], context: Float[Array, "b t *s c"], n_steps: int
) -> jax.Array:
    """Rolls ``step_fn`` (window (B, T, ...) -> next frame (B, ...)) out for ``n_steps``.

    Written with ``lax.scan`` so it traces ``step_fn`` once; call it under ``jit`` (or
    ``nnx.jit`` with the model as an argument) for speed.
    """
    if n_steps < 1:
        raise ValueError(f"rollout needs n_steps >= 1, got {n_steps}")

    def body(window, _):
        nxt = step_fn(window).astype(window.dtype)
        return jnp.concatenate([window[:, 1:], nxt[:, None]], axis=1), nxt

    _, preds = jax.lax.scan(body, context, None, length=n_steps)
    return jnp.moveaxis(preds, 0, 1)


def per_step_errors(
    pred: Float[Array, "b s *sp c"],
    truth: Float[Array, "b s *sp c"],
    metrics: Sequence[str] = ("nrmse", "vrmse", "rmse"),
) -> dict[str, np.ndarray]:
    """Metric name -> (B, S, C) error of every sample, rollout step and field (host arrays)."""
    if pred.shape != truth.shape:
        raise ValueError(f"rollout {pred.shape} and ground truth {truth.shape} differ in shape")
    out = {}
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
        fn = jax.vmap(METRICS[name], in_axes=1, out_axes=1)  # over steps
        out[name] = np.asarray(fn(pred, truth))
    return out


def window_label(first: int, last: int) -> str:
    """'1' for a one-step window, else 'first-last'."""
    return str(first) if first == last else f"{first}-{last}"


def window_means(
    per_step: np.ndarray,
    windows: Sequence[tuple[int, int]] = WINDOWS,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean of a (B, S, C) error over each window of steps that the rollout reaches.

    A window starting beyond S is dropped; one ending beyond S is truncated and labelled
    with the steps actually used (e.g. '6-8' for S = 8). ``valid`` (B, C) masks padding fields.
    """
    per_step = np.asarray(per_step, np.float64)
    s = per_step.shape[1]
    mask = np.ones_like(per_step, bool)
    if valid is not None:
        mask &= np.asarray(valid, bool)[:, None, :]
    out = {}
    for first, last in windows:
        if first > s:
            continue
        last = min(last, s)
        sl = slice(first - 1, last)
        out[window_label(first, last)] = float(per_step[:, sl][mask[:, sl]].mean())
    return out
