"""Plots of surrogate rollouts: truth vs prediction vs error over time; error vs rollout step.

Made to be read without the code: every axis is labelled, every image row has a colourbar
saying what its colours mean, and the title names the system, field and steps shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from jaxfm.atomic import atomic_path

AS_STORED = "physical units (as stored)"
"""Colourbar label of a field without known units: the simulated fields carry no units
metadata, and the rollout plots show them as read from disk (not normalised)."""


def field_units(units: Mapping[str, str] | str | None, name: str) -> str:
    """The colourbar label of field ``name``: its entry of ``units`` (a field -> units
    mapping, or one label for every field, e.g. "normalised"), else :data:`AS_STORED`."""
    if isinstance(units, str):
        return units
    return (units or {}).get(name, AS_STORED)


def plot_rollout(
    path: str,
    truth: np.ndarray,
    pred: np.ndarray,
    field_names,
    *,
    fields: int | Sequence[int] = 0,
    n_cols: int = 5,
    title: str = "",
    units: Mapping[str, str] | str | None = None,
) -> str:
    """Rows truth / prediction / |error| of each of ``fields`` at ``n_cols`` rollout steps.

    Truth and prediction of a field share one colour scale, the truth's range over the steps
    shown (a prediction outside it saturates, and the colourbar's arrows say so, rather than
    washing out the truth); the error row has its own, from 0. Each row has a colourbar
    labelled with the field's units (:func:`field_units`). Images are drawn x to the right
    and y up, in grid points (the first spatial axis of the arrays is x).

    Args: truth, pred: (S, H, W, C) of one trajectory, step 1 first; title: the system (and
      split), put before the field and steps in the figure's title.
    """
    fig = rollout_figure(
        truth, pred, field_names, fields=fields, n_cols=n_cols, title=title, units=units
    )
    return _save(fig, path)


def rollout_figure(
    truth: np.ndarray,
    pred: np.ndarray,
    field_names,
    *,
    fields: int | Sequence[int] = 0,
    n_cols: int = 5,
    title: str = "",
    units: Mapping[str, str] | str | None = None,
) -> plt.Figure:
    """The figure of :func:`plot_rollout`, not saved (for notebooks and tests)."""
    fields = [fields] if isinstance(fields, (int, np.integer)) else list(fields)
    s = truth.shape[0]
    cols = sorted(set(np.linspace(0, s - 1, min(n_cols, s)).round().astype(int)))
    n_rows = 3 * len(fields)
    fig, axes = plt.subplots(
        n_rows,
        len(cols),
        figsize=(2.3 * len(cols) + 1.4, 2.2 * n_rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for k, c in enumerate(fields):
        name = field_names[c]
        shown_truth, shown_pred = truth[cols, ..., c], pred[cols, ..., c]
        err = np.abs(shown_pred - shown_truth)
        lo, hi = float(shown_truth.min()), float(shown_truth.max())
        rows = (
            ("truth", shown_truth, "viridis", (lo, hi), field_units(units, name)),
            ("prediction", shown_pred, "viridis", (lo, hi), field_units(units, name)),
            ("|error|", err, "magma", (0.0, float(err.max()) or 1.0), field_units(units, name)),
        )
        for i, (label, imgs, cmap, (vmin, vmax), unit) in enumerate(rows):
            r = 3 * k + i
            for j in range(len(cols)):
                ax = axes[r, j]
                im = ax.imshow(imgs[j].T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
                ax.xaxis.set_major_locator(MaxNLocator(3, integer=True))
                ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))
                if j:
                    ax.set_yticklabels([])
                if r < n_rows - 1:
                    ax.set_xticklabels([])
            axes[r, 0].set_ylabel(f"{name} {label}\ny (grid points)")
            extend = _extend(imgs.min(), imgs.max(), vmin, vmax) if label == "prediction" else None
            bar = fig.colorbar(im, ax=list(axes[r, :]), shrink=0.9, extend=extend or "neither")
            what = "|error|" if label == "|error|" else name
            bar.set_label(f"{what}\n{unit}", fontsize=8)
    for j, t in enumerate(cols):
        axes[0, j].set_title(f"step {t + 1}")
        axes[-1, j].set_xlabel("x (grid points)")
    names = ", ".join(field_names[c] for c in fields)
    steps = f"rollout steps {cols[0] + 1}-{cols[-1] + 1} of {s}" if len(cols) > 1 else "step 1"
    fig.suptitle(f"{title + ': ' if title else ''}{names}, {steps}")
    return fig


def _extend(data_lo: float, data_hi: float, vmin: float, vmax: float) -> str | None:
    """The colourbar arrows that say the prediction leaves the truth's range."""
    below, above = data_lo < vmin, data_hi > vmax
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (bool(below), bool(above))
    )


def plot_error_vs_step(path: str, res: dict, *, title: str = "") -> str:
    """NRMSE and VRMSE per rollout step, model vs persistence (``res`` from the pipeline)."""
    return _save(error_vs_step_figure(res, title=title), path)


def error_vs_step_figure(res: dict, *, title: str = "") -> plt.Figure:
    """The figure of :func:`plot_error_vs_step`: one panel per metric, one legend below both
    (outside the axes, so it covers no line), a log y axis where the errors span more than a
    factor of 10 (growth over a long rollout), else a linear one."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
    for ax, metric in zip(axes, ("nrmse", "vrmse")):
        values = []
        for label, style in (("model", "-o"), ("persistence", "--s")):
            ys = res[label][metric]["per_step"]
            values += ys
            ax.plot(range(1, len(ys) + 1), ys, style, ms=3, label=label)
        ax.set_xlabel("rollout step")
        ax.set_ylabel(metric.upper())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yscale(_y_scale(values))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle(f"{title}: error vs rollout step" if title else "error vs rollout step")
    return fig


def _y_scale(values) -> str:
    """ "log" when positive values span more than a factor of 10, else "linear"."""
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0 or v.min() <= 0:
        return "linear"
    return "log" if v.max() / v.min() > 10 else "linear"


def _save(fig: plt.Figure, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)
    return path
