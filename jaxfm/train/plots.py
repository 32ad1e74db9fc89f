"""Plots people would rather look at than read: metric curves from ``metrics.jsonl``."""

from __future__ import annotations

import json
import os

import matplotlib.pyplot as plt

from jaxfm.atomic import atomic_path


def read_metrics(workdir: str) -> list[dict]:
    """All records of ``WORKDIR/metrics.jsonl`` in file order."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(
    workdir: str,
    keys: list[str],
    *,
    title: str = "",
    filename: str = "metrics.png",
    log_y: bool = True,
    ylabel: str = "",
) -> str | None:
    """Plots ``keys`` against step into ``WORKDIR/filename``; returns its path (or None).

    See :func:`metrics_figure` for how the curves are drawn."""
    fig = metrics_figure(read_metrics(workdir), keys, title=title, log_y=log_y, ylabel=ylabel)
    if fig is None:
        return None
    path = os.path.join(workdir, filename)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)
    return path


SPARSE = 20
"""A curve with fewer points than this (or under a quarter of the densest curve's) is an
eval curve: drawn with markers, on top of the dense training curve."""


def metrics_figure(
    records: list[dict],
    keys: list[str],
    *,
    title: str = "",
    log_y: bool = True,
    ylabel: str = "",
) -> plt.Figure | None:
    """The figure of :func:`plot_metrics` (None when no key has a number).

    The training curve, logged every few steps, is dense; eval curves have a handful of
    points and would vanish under it, so they get markers and are drawn above it. The
    legend sits outside the axes, to the right, where it covers no curve. ``log_y``: a log
    y axis (losses fall over decades), unless a curve has a value <= 0 (a log axis would drop
    it silently), then linear. ``ylabel``: default the key when there is one, else "value".
    """
    curves = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if pts:
            curves[key] = list(zip(*pts))
    if not curves:
        return None
    densest = max(len(steps) for steps, _ in curves.values())
    fig, ax = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
    for key, (steps, values) in curves.items():
        if len(steps) < SPARSE or 4 * len(steps) < densest:
            ax.plot(steps, values, marker="o", ms=4, lw=1.5, zorder=3, label=key)
        else:
            ax.plot(steps, values, lw=1.0, alpha=0.8, zorder=2, label=key)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel or (next(iter(curves)) if len(curves) == 1 else "value"))
    positive = all(min(values) > 0 for _, values in curves.values())
    if log_y and positive:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", frameon=False)
    ax.set_title(title)
    return fig
