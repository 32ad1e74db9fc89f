"""Quickstart: learn the Lorenz-63 flow map with a residual MLP (the engine end to end).

    python experiments/quickstart.py smoke --workdir runs/quickstart
    python experiments/quickstart.py default --train.steps 3000 --parallel.strategy fsdp

Writes config.json, metrics.jsonl, checkpoints/, results.json and metrics.png (loss,
eval/mse and eval/persistence_mse against step) to the workdir.
The result to read: eval/mse against eval/persistence_mse (predicting "no change").
"""

from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jaxfm  # noqa: E402
from jaxfm.ckpt import CkptConfig  # noqa: E402
from jaxfm.config import ExperimentConfig, cli  # noqa: E402
from jaxfm.data.lorenz import flow_map_splits  # noqa: E402
from jaxfm.data.sources import ArraySource  # noqa: E402
from jaxfm.models.regressor import RegressorConfig  # noqa: E402
from jaxfm.tasks.regression.task import RegressionTask  # noqa: E402
from jaxfm.train import TrainConfig, run, write_results  # noqa: E402
from jaxfm.train.plots import plot_metrics  # noqa: E402


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Lorenz-63 flow-map pairs."""

    n_train: int = 64
    """Training trajectories."""
    n_eval: int = 16
    """Held-out trajectories."""
    n_steps: int = 64
    """Pairs per trajectory."""
    dt: float = 0.02
    """Time between input and target."""


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """Quickstart experiment."""

    model: RegressorConfig = dataclasses.field(default_factory=RegressorConfig)
    """The regressor."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    """The dataset."""


def default() -> Config:
    """A few minutes on CPU: 3000 steps, batch 128."""
    return Config(
        workdir="runs/quickstart",
        train=TrainConfig(
            steps=3000, batch_size=128, lr=3e-3, warmup_steps=100, log_every=50, eval_every=500
        ),
        ckpt=CkptConfig(every=500),
    )


def smoke() -> Config:
    """Seconds on CPU: a tiny model, 60 steps."""
    return Config(
        workdir="runs/quickstart-smoke",
        model=RegressorConfig(hidden=32, depth=2),
        data=DataConfig(n_train=16, n_eval=4, n_steps=32),
        train=TrainConfig(
            steps=60, batch_size=32, lr=3e-3, warmup_steps=5, log_every=10, eval_every=30
        ),
        ckpt=CkptConfig(every=30),
    )


PRESETS = {"default": default, "smoke": smoke}


def main(cfg: Config) -> dict:
    """Trains, evaluates and plots; returns the results dict."""
    d = cfg.data
    train, held_out, stats = flow_map_splits(
        d.n_train, d.n_eval, d.n_steps, dt=d.dt, seed=cfg.train.seed
    )
    results = run(
        cfg,
        RegressionTask(cfg.model),
        ArraySource(train, "lorenz-train"),
        ArraySource(held_out, "lorenz-eval"),
        meta={"normalisation": stats},
    )
    plot = plot_metrics(
        cfg.workdir, ["loss", "eval/mse", "eval/persistence_mse"], title="Lorenz-63 flow map"
    )
    if plot:
        print(f"plot: {plot}")
        results = write_results(cfg.workdir, {"plots": [plot]})
    return results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    main(cli(Config, PRESETS, doc=__doc__))
