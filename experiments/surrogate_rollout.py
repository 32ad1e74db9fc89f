"""Rollout evaluation of any trained surrogate checkpoint, with plots.

    python -m experiments.surrogate_rollout default --workdir runs/sur-ft --rollout.steps 30
    python -m experiments.surrogate_rollout default --workdir runs/sur-ft --rollout.checkpoint best
    python -m experiments.surrogate_rollout default --workdir runs/sur-ft --rollout.split test

Reads WORKDIR/config.json (the run's own config, its data sources included) and one of its
checkpoints (``--rollout.checkpoint``: ``last``, the newest, by default; ``best``, the best by
the run's ``ckpt.best_metric``), rolls the model out autoregressively (sliding context) on the
first ``data.n_rollout`` held-out trajectories (valid split; ``--rollout.split test`` for final
scoring) of every system of the run, reading only those from disk, and writes rollout.json
(NRMSE/VRMSE per step and over windows 1, 2-5, 6-12, 13-30, model and persistence, per system
and per field), results.json["rollout_eval"], report.md and, per system, rollout_<sys>.png
(truth / prediction / |error| over time) and error_vs_step_<sys>.png; the test split's files
are rollout_test.json, results.json["rollout_eval_test"], report_test.md, rollout_test_<sys>.png
and error_vs_step_test_<sys>.png, so they never overwrite the valid split's.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import jaxfm
from jaxfm.config import run_cli
from jaxfm.parallel.options import ParallelConfig
from jaxfm.tasks.surrogate.pipeline import evaluate_rollouts, load_run_config
from jaxfm.tasks.surrogate.rollout import ROLLOUT_STEPS
from jaxfm.train import write_results


@dataclasses.dataclass(frozen=True)
class RolloutOptions:
    """What to roll out."""

    steps: int = ROLLOUT_STEPS
    """Rollout steps (truncated to the trajectory length)."""
    checkpoint: Literal["last", "best"] = "last"
    """Checkpoint to score: last (the newest) or best (by the run's ckpt.best_metric)."""
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
    """30 steps (windows 1, 2-5, 6-12, 13-30), the newest checkpoint."""
    return RolloutConfig(workdir="runs/surrogate-finetune-m1")


def smoke() -> RolloutConfig:
    """The fine-tuning smoke run's workdir, 5 steps."""
    return RolloutConfig(workdir="runs/surrogate-finetune-smoke", rollout=RolloutOptions(steps=5))


PRESETS = {"default": default, "smoke": smoke}


def report(workdir: str, res: dict, split: str = "valid") -> str:
    """A markdown table of the rollout windows, model beside persistence, per system and
    field, and the mean over systems (``report.md``; ``report_test.md`` for the test split)."""
    some = next(iter(res.values()), {})
    lines = [
        "# Rollout evaluation",
        "",
        f"run: `{workdir}`; split: {split}; checkpoint: {some.get('checkpoint', '-')}; "
        + ", ".join(
            f"{s}: {r['trajectories']} trajectories x {r['steps']} steps" for s, r in res.items()
        ),
        "",
        "| system | field | metric | window | model | persistence |",
        "|---|---|---|---|---|---|",
    ]
    for system, r in res.items():
        for metric in ("nrmse", "vrmse"):
            m, p = r["model"][metric], r["persistence"][metric]
            for win, v in m["windows"].items():
                lines.append(
                    f"| {system} | all | {metric} | {win} | {v:.4f} | {p['windows'][win]:.4f} |"
                )
            for field, fm in m["fields"].items():
                for win, v in fm["windows"].items():
                    pv = p["fields"][field]["windows"][win]
                    lines.append(f"| {system} | {field} | {metric} | {win} | {v:.4f} | {pv:.4f} |")
    for metric in ("nrmse", "vrmse"):
        for win, v in mean_over_systems(res, metric).items():
            p = mean_over_systems(res, metric, "persistence")[win]
            lines.append(f"| mean over systems | all | {metric} | {win} | {v:.4f} | {p:.4f} |")
    path = os.path.join(workdir, "report.md" if split == "valid" else f"report_{split}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def mean_over_systems(res: dict, metric: str, who: str = "model") -> dict[str, float]:
    """Window -> mean over the systems that reach it of their window means."""
    by_win: dict[str, list[float]] = {}
    for r in res.values():
        for win, v in r[who][metric]["windows"].items():
            by_win.setdefault(win, []).append(v)
    return {win: sum(v) / len(v) for win, v in by_win.items()}


def main(cfg: RolloutConfig) -> dict:
    """Rolls out the run's model and writes metrics, report and plots."""
    run_cfg = load_run_config(cfg.workdir)
    run_cfg = dataclasses.replace(run_cfg, workdir=cfg.workdir, parallel=cfg.parallel)
    res = evaluate_rollouts(
        run_cfg,
        max_steps=cfg.rollout.steps,
        plot_dir=cfg.workdir,
        checkpoint=cfg.rollout.checkpoint,
        split=cfg.rollout.split,
    )
    split = cfg.rollout.split
    path = report(cfg.workdir, res, split)
    print(open(path).read())
    key = "rollout_eval" if split == "valid" else f"rollout_eval_{split}"
    return write_results(cfg.workdir, {key: res})


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, RolloutConfig, PRESETS, doc=__doc__)
