"""Plots people would rather look at than read: metric curves from ``metrics.jsonl``."""

from __future__ import annotations

import json
import os

import matplotlib.pyplot as plt


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
) -> str | None:
    """Plots ``keys`` against step into ``WORKDIR/filename``; returns its path (or None)."""
    records = read_metrics(workdir)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = 0
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if pts:
            steps, values = zip(*pts)
            ax.plot(steps, values, marker="o" if len(pts) < 20 else None, ms=3, label=key)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    path = os.path.join(workdir, filename)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
