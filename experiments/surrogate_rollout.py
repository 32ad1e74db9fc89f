"""Rollout evaluation of any trained surrogate checkpoint, with plots.

    python -m experiments.surrogate_rollout default --workdir runs/sur-ft --rollout.steps 12
    python -m experiments.surrogate_rollout default --workdir runs/sur-ft --rollout.split test

Reads WORKDIR/config.json (the run's own config, its data sources included) and its newest
checkpoint, rolls the model out autoregressively (sliding context) on the first
``data.n_rollout`` held-out trajectories (valid split; ``--rollout.split test`` for final
scoring) of every system of the run, reading only those from disk, and writes rollout.json
(NRMSE/VRMSE per step and over windows 1, 2-5, 6-12, model and persistence),
results.json["rollout_eval"], report.md and, per system, rollout_<sys>.png (truth /
prediction / |error| over time) and error_vs_step_<sys>.png.
"""

from __future__ import annotations

import dataclasses
import os

import jaxfm
from jaxfm.config import cli
from jaxfm.parallel.options import ParallelConfig
from jaxfm.tasks.surrogate.pipeline import evaluate_rollouts, load_run_config
from jaxfm.train import write_results


@dataclasses.dataclass(frozen=True)
class RolloutOptions:
    """What to roll out."""

    steps: int = 12
    """Rollout steps (truncated to the trajectory length)."""
    split: str = "valid"
    """Held-out split to roll out: valid (what training reported) or test (final scoring;
    Well dataset directories and files of 3+ trajectories have one, simulators do not)."""


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """Evaluate the trained run in --workdir (no training: no train/ckpt sections)."""

    workdir: str = "runs/surrogate-finetune-m1"
    """The run to evaluate (its config.json and checkpoints/); outputs are written there."""
    parallel: ParallelConfig = dataclasses.field(default_factory=ParallelConfig)
    """Device mesh for loading the checkpoint."""
    rollout: RolloutOptions = dataclasses.field(default_factory=RolloutOptions)
    """Rollout settings."""


def default() -> RolloutConfig:
    """12 steps (windows 1, 2-5, 6-12)."""
    return RolloutConfig(workdir="runs/surrogate-finetune-m1")


def smoke() -> RolloutConfig:
    """The fine-tuning smoke run's workdir, 5 steps."""
    return RolloutConfig(workdir="runs/surrogate-finetune-smoke", rollout=RolloutOptions(steps=5))


PRESETS = {"default": default, "smoke": smoke}


def report(workdir: str, res: dict) -> str:
    """A markdown table of the rollout windows, model beside persistence."""
    lines = [
        "# Rollout evaluation",
        "",
        f"run: `{workdir}`",
        "",
        "| system | metric | window | model | persistence |",
        "|---|---|---|---|---|",
    ]
    for system, r in res.items():
        for metric in ("nrmse", "vrmse"):
            for win, v in r["model"][metric]["windows"].items():
                p = r["persistence"][metric]["windows"][win]
                lines.append(f"| {system} | {metric} | {win} | {v:.4f} | {p:.4f} |")
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(cfg: RolloutConfig) -> dict:
    """Rolls out the run's model and writes metrics, report and plots."""
    run_cfg = load_run_config(cfg.workdir)
    run_cfg = dataclasses.replace(run_cfg, workdir=cfg.workdir, parallel=cfg.parallel)
    res = evaluate_rollouts(
        run_cfg, max_steps=cfg.rollout.steps, plot_dir=cfg.workdir, split=cfg.rollout.split
    )
    path = report(cfg.workdir, res)
    print(open(path).read())
    return write_results(cfg.workdir, {"rollout_eval": res})


if __name__ == "__main__":
    jaxfm.configure_cpu()
    main(cli(RolloutConfig, PRESETS, doc=__doc__))
