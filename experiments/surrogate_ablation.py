"""Lever ablation of the surrogate transfer study: one training lever changed at a time.

    python -m experiments.surrogate_ablation smoke --workdir runs/ablation-smoke
    python -m experiments.surrogate_ablation demo --workdir runs/ablation-demo

Every variant (``jaxfm.tasks.surrogate.ablation.VARIANTS``: increment units, increment loss,
patch jitter, input noise, time strides, weight decay, constant learning rate, and the patch
sizes of ``--ablation.patch``) re-runs the base transfer study with its overrides, pretraining
included, in WORKDIR/<variant>/. Writes WORKDIR/{command.txt, config.json, results.json,
report.md}: per variant, target and arm, the one-step and 5-step NRMSE of the held-out
trajectories and the change against the baseline row. Rerunning resumes.
"""

from __future__ import annotations

import dataclasses
import os

import jaxfm
from jaxfm.config import run_cli, to_dict
from jaxfm.provenance import command_line, write_study
from jaxfm.tasks.surrogate.ablation import AblationOptions, ablation_table, changes, run_ablation
from jaxfm.tasks.surrogate.presets import FINETUNE_PRESETS, PRETRAIN_PRESETS
from jaxfm.tasks.surrogate.transfer import StudyOptions


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """The ablation: a base transfer study and the variants run on it."""

    workdir: str = "runs/surrogate-ablation"
    """Root: one study folder per variant, report.md."""
    ablation: AblationOptions = dataclasses.field(default_factory=AblationOptions)
    """Base study and variants."""


def smoke() -> AblationConfig:
    """Minutes on a CPU: the smoke presets, two variants, the pretrained arm only."""
    study = StudyOptions(
        pretrain_preset="smoke",
        finetune_preset="smoke",
        targets=("compressible_m1",),
        n_trains=(2,),
        seeds=(0,),
        arms=("pretrained",),
    )
    return AblationConfig(
        workdir="runs/surrogate-ablation-smoke",
        ablation=AblationOptions(study=study, variants=("baseline", "increment units")),
    )


def demo() -> AblationConfig:
    """Every lever on the demo's study (``make demo``'s presets: 16x16, patch 2, 800
    pretraining and 100 fine-tuning steps, compressible M=1.0 with 4 trajectories), both
    AViT arms. The baseline turns the demo's lever off (MPP's normalised MSE instead of the
    increment loss), so every lever is measured alone against plain delta prediction; the
    "increment loss" row is the demo itself. About 3-5 minutes per variant on 2 CPU cores."""
    study = StudyOptions(
        pretrain_preset="demo",
        finetune_preset="demo",
        targets=("compressible_m1",),
        n_trains=(4,),
        seeds=(0,),
        arms=("pretrained", "scratch"),
        overrides=("model.loss=nmse",),
    )
    return AblationConfig(
        workdir="runs/surrogate-ablation",
        ablation=AblationOptions(study=study, patch=("4",)),
    )


PRESETS = {"smoke": smoke, "demo": demo}


def main(cfg: AblationConfig) -> dict:
    """Runs every variant, writes and prints the table."""
    rows, wall = run_ablation(cfg.workdir, cfg.ablation)
    command = command_line()
    s = cfg.ablation.study
    text = "\n".join(
        [
            "# Surrogate lever ablation",
            "",
            f"command: `{command}`",
            "",
            f"base study: presets {s.pretrain_preset} / {s.finetune_preset}, targets "
            f"{', '.join(s.targets)}, {', '.join(map(str, s.n_trains))} training trajectories, "
            f"seeds {list(s.seeds)}; every variant pretrains and fine-tunes its own models "
            f"(3-5 min per variant on 2 CPU cores); wall time of this invocation "
            f"{wall / 60:.1f} min (finished runs are re-scored, not retrained)",
            "",
            "one-step NRMSE: every held-out window of the target; 5-step: mean over the first 5",
            "autoregressive steps of the held-out rollout trajectories; last step: the NRMSE at",
            "the last rollout step (long-horizon stability); change vs the baseline row of the",
            "same arm (negative = lower error = better)",
            "",
            ablation_table(rows),
        ]
    )
    presets = {
        "pretrain": to_dict(PRETRAIN_PRESETS[s.pretrain_preset]()),
        "finetune": to_dict(FINETUNE_PRESETS[s.finetune_preset]()),
    }
    out = {"rows": rows, "changes": changes(rows), "presets": presets, "wall_time_s": wall}
    write_study(cfg.workdir, command=command, config=cfg, results=out, report=text)
    print(text)
    print(f"report: {os.path.abspath(cfg.workdir)}/report.md")
    return out


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, AblationConfig, PRESETS, doc=__doc__)
