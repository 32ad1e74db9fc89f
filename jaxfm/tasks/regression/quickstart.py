"""The quickstart experiment: Lorenz-63 flow-map regression with a residual MLP (config,
presets, run). ``experiments.quickstart`` is its command line; the notebook uses it too."""

from __future__ import annotations

import dataclasses

from jaxfm.ckpt import CkptConfig
from jaxfm.config import ExperimentConfig
from jaxfm.data.lorenz import LorenzConfig, flow_map_splits
from jaxfm.data.sources import ArraySource
from jaxfm.models.regressor import RegressorConfig
from jaxfm.tasks.regression.task import RegressionTask
from jaxfm.train import TrainConfig, run, write_results
from jaxfm.train.plots import plot_metrics


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """Quickstart experiment."""

    model: RegressorConfig = dataclasses.field(default_factory=RegressorConfig)
    """The regressor."""
    data: LorenzConfig = dataclasses.field(default_factory=LorenzConfig)
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
        data=LorenzConfig(n_train=16, n_eval=4, n_steps=32),
        train=TrainConfig(
            steps=60, batch_size=32, lr=3e-3, warmup_steps=5, log_every=10, eval_every=30
        ),
        ckpt=CkptConfig(every=30),
    )


PRESETS = {"default": default, "smoke": smoke}


def run_quickstart(cfg: Config) -> dict:
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
