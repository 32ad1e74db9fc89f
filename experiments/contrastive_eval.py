"""Re-evaluate a trained contrastive run: retrieval, k-NN R^2, probes, baselines, plots.

    python -m experiments.contrastive_eval default --workdir runs/contrastive
    python -m experiments.contrastive_eval fast --workdir runs/contrastive --eval.knn_k 32

The model and data sections come from WORKDIR/config.json (the run being evaluated); this
script's own options are ``--workdir``, ``--seed`` and the ``eval`` section. It trains
nothing, so its config has no ``train``/``ckpt`` sections (the experiment test suite runs
every config with a ``train`` section as a training script). Updates WORKDIR/results.json
(``final/``, ``control/`` and ``supervised_*`` keys), report.md and the plots.
"""

from __future__ import annotations

import dataclasses
import os

import jaxfm
from jaxfm.config import load_json, run_cli
from jaxfm.data.galaxies import load_splits
from jaxfm.tasks.contrastive.experiment import Config as TrainRunConfig
from jaxfm.tasks.contrastive.experiment import EvalConfig, evaluate_run
from jaxfm.tasks.contrastive.task import ContrastiveTask


@dataclasses.dataclass(frozen=True)
class Config:
    """Evaluation of the run in --workdir."""

    workdir: str = "runs/contrastive"
    """The experiments.contrastive_train run to evaluate (results are written there too)."""
    seed: int = 0
    """Seed of the second gallery rendering, the MLP probes and the random-init control."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """What to evaluate."""


def default() -> Config:
    """Everything: retrieval, k-NN, probes, random-init control, supervised baselines."""
    return Config(workdir="runs/contrastive")


def fast() -> Config:
    """Retrieval and k-NN only (no probes or baselines)."""
    return Config(workdir="runs/contrastive", eval=EvalConfig(probes=False, baselines=False))


def smoke() -> Config:
    """The smoke run of experiments.contrastive_train, with short probes."""
    return Config(workdir="runs/contrastive-smoke", eval=EvalConfig(probe_epochs=1))


PRESETS = {"default": default, "fast": fast, "smoke": smoke}


def main(cfg: Config) -> dict:
    """Loads WORKDIR's config and newest checkpoint, evaluates, writes results."""
    path = os.path.join(cfg.workdir, "config.json")
    if not os.path.exists(path):
        raise SystemExit(
            f"{path} does not exist: --workdir must be an experiments.contrastive_train run"
        )
    run_cfg = load_json(TrainRunConfig, path)
    run_cfg = dataclasses.replace(
        run_cfg,
        workdir=cfg.workdir,
        eval=cfg.eval,
        train=dataclasses.replace(run_cfg.train, seed=cfg.seed),
    )
    train, gallery = load_splits(run_cfg.data, limit=run_cfg.data.eval_max)
    # The checkpoint holds the trained spectrum encoder: no need for spectrum_init here.
    return evaluate_run(run_cfg, ContrastiveTask(run_cfg.model), train, gallery)


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
