"""Plots of surrogate rollouts: truth vs prediction vs error over time; error vs rollout step."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np


def plot_rollout(
    path: str,
    truth: np.ndarray,
    pred: np.ndarray,
    field_names,
    *,
    field: int = 0,
    n_cols: int = 5,
    title: str = "",
) -> str:
    """Rows truth / prediction / |error| of one field at ``n_cols`` rollout steps.

    Args: truth, pred: (S, H, W, C) of one trajectory.
    """
    s = truth.shape[0]
    cols = sorted(set(np.linspace(0, s - 1, min(n_cols, s)).round().astype(int)))
    fig, axes = plt.subplots(3, len(cols), figsize=(2.2 * len(cols), 6.4), squeeze=False)
    lo, hi = truth[..., field].min(), truth[..., field].max()
    err = np.abs(pred[..., field] - truth[..., field])
    for j, t in enumerate(cols):
        for i, (img, kw) in enumerate(
            (
                (truth[t, ..., field], {"vmin": lo, "vmax": hi}),
                (pred[t, ..., field], {"vmin": lo, "vmax": hi}),
                (err[t], {"vmin": 0, "vmax": err.max() or 1.0}),
            )
        ):
            axes[i, j].imshow(img, cmap="magma" if i == 2 else "viridis", **kw)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(f"step {t + 1}")
    for i, lab in enumerate(("truth", "prediction", "|error|")):
        axes[i, 0].set_ylabel(lab)
    fig.suptitle(f"{title} {field_names[field]}".strip())
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_error_vs_step(path: str, res: dict, *, title: str = "") -> str:
    """NRMSE and VRMSE per rollout step, model vs persistence (``res`` from the pipeline)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("nrmse", "vrmse")):
        for label, style in (("model", "-o"), ("persistence", "--s")):
            ys = res[label][metric]["per_step"]
            ax.plot(range(1, len(ys) + 1), ys, style, ms=3, label=label)
        ax.set_xlabel("rollout step")
        ax.set_ylabel(metric)
        ax.set_yscale("log")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
