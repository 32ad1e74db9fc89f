"""The transfer study: does multi-physics pretraining help on unseen compressible flow?

    python experiments/surrogate_transfer.py smoke --workdir runs/sur-transfer-smoke
    python experiments/surrogate_transfer.py cpu --workdir runs/sur-transfer  # 75-90 min, 2 cores
    python experiments/surrogate_transfer.py gpu --workdir runs/sur-transfer-gpu

Pretrain the AViT once on {shallow water, FitzHugh-Nagumo, incompressible NS, Gray-Scott};
then, for each target (compressible Euler M=0.1 and M=1.0), each number of training
trajectories and each seed, fine-tune it and train the controls from scratch (same AViT, FNO,
U-Net) with the same budget. Every arm is scored on the same held-out trajectories: one-step
NRMSE/VRMSE and the 5-step rollout NRMSE, beside persistence (copy the last frame).
Writes WORKDIR/results.json (every run) and WORKDIR/report.md (mean +- standard error over
seeds, with the command and wall time). The ``demo`` preset is the small end-to-end run of
``make demo``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import jaxfm  # noqa: E402
from experiments import surrogate_finetune, surrogate_pretrain  # noqa: E402
from jaxfm.config import cli  # noqa: E402
from jaxfm.tasks.surrogate.pipeline import FINETUNE_SYSTEMS, SurrogateExperiment  # noqa: E402
from jaxfm.train import write_results  # noqa: E402

ARMS = ("pretrained", "scratch", "fno", "unet")


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """The grid of fine-tuning runs."""

    pretrain_preset: str = "tiny"
    """Preset of experiments/surrogate_pretrain.py."""
    finetune_preset: str = "m1"
    """Preset of experiments/surrogate_finetune.py (its data.systems is replaced by targets)."""
    targets: tuple[str, ...] = FINETUNE_SYSTEMS
    """Unseen target systems (default: every held-out system)."""
    n_trains: tuple[int, ...] = (4, 16)
    """Training trajectories of the target."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (init and data order; the simulated data are fixed)."""
    arms: tuple[str, ...] = ARMS
    """pretrained (AViT from the pretraining run), scratch (same AViT), fno, unet."""
    pretrain_steps: int = 0
    """Override the pretraining preset's steps (0: keep)."""
    finetune_steps: int = 0
    """Override the fine-tuning preset's steps (0: keep)."""
    cache_dir: str = ""
    """Simulated-data cache shared by every run (empty: WORKDIR/pde_cache)."""


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Transfer study; each run takes train/ckpt settings from its preset (see StudyOptions)."""

    workdir: str = "runs/surrogate-transfer"
    """Root of the study: pretrain/, one directory per fine-tuning run, report.md."""
    study: StudyOptions = dataclasses.field(default_factory=StudyOptions)
    """The grid."""


def smoke() -> TransferConfig:
    """A few minutes on a loaded CPU: smoke presets, M=1.0, 2 trajectories, one seed."""
    return TransferConfig(
        workdir="runs/surrogate-transfer-smoke",
        study=StudyOptions(
            pretrain_preset="smoke",
            finetune_preset="smoke",
            targets=("compressible_m1",),
            n_trains=(2,),
            seeds=(0,),
        ),
    )


def cpu() -> TransferConfig:
    """The CPU study (reference note section 11 sizes): 127 min measured on 2 shared cores,
    75-90 min estimated on idle ones (docs/surrogate.md, "Transfer study")."""
    return TransferConfig(
        workdir="runs/surrogate-transfer",
        # 600 fine-tuning steps per run made the 48 runs about two hours here; 300 keeps the
        # grid near the hour: 2,400 windows drawn, ~20 epochs of 4 trajectories (29 windows
        # each), ~5 epochs of 16.
        study=StudyOptions(pretrain_steps=3000, finetune_steps=300),
    )


def gpu() -> TransferConfig:
    """A larger study for one GPU: longer pretraining and fine-tuning, 5 seeds."""
    return TransferConfig(
        workdir="runs/surrogate-transfer-gpu",
        study=StudyOptions(
            pretrain_steps=20_000,
            finetune_steps=3000,
            seeds=(0, 1, 2, 3, 4),
            n_trains=(2, 4, 8, 16),
        ),
    )


def demo() -> TransferConfig:
    """`make demo`: the smoke study end to end, pretrained vs scratch (minutes on a CPU)."""
    base = smoke()
    study = dataclasses.replace(base.study, arms=("pretrained", "scratch"))
    return dataclasses.replace(base, workdir="runs/demo", study=study)


PRESETS = {"smoke": smoke, "demo": demo, "cpu": cpu, "gpu": gpu}


def _with(cfg: SurrogateExperiment, workdir: str, steps: int, cache: str, **kw):
    train = dataclasses.replace(cfg.train, steps=steps) if steps else cfg.train
    data = dataclasses.replace(cfg.data, cache_dir=cache, **kw.pop("data", {}))
    return dataclasses.replace(cfg, workdir=workdir, train=train, data=data, **kw)


def run_study(cfg: TransferConfig) -> dict:
    """Runs (or resumes) every arm of the grid; returns and writes the summary."""
    s, root = cfg.study, cfg.workdir
    if not s.cache_dir:
        s = dataclasses.replace(s, cache_dir=os.path.join(root, "pde_cache"))
    t0 = time.time()
    pre = _with(
        surrogate_pretrain.PRESETS[s.pretrain_preset](),
        os.path.join(root, "pretrain"),
        s.pretrain_steps,
        s.cache_dir,
    )
    surrogate_pretrain.main(pre)
    runs = []
    for target in s.targets:
        for n in s.n_trains:
            for seed in s.seeds:
                for arm in s.arms:
                    base = surrogate_finetune.PRESETS[s.finetune_preset]()
                    model = dataclasses.replace(
                        base.model, arch="avit" if arm in ("pretrained", "scratch") else arm
                    )
                    ft = _with(
                        base,
                        os.path.join(root, f"{target}_n{n}_{arm}_s{seed}"),
                        s.finetune_steps,
                        s.cache_dir,
                        model=model,
                        init_from=pre.workdir if arm == "pretrained" else None,
                        data={"systems": (target,), "n_train": n},
                    )
                    ft = dataclasses.replace(ft, train=dataclasses.replace(ft.train, seed=seed))
                    res = surrogate_finetune.main(ft)
                    roll = res["rollout"][target]
                    runs.append(
                        {
                            "target": target,
                            "n_train": n,
                            "seed": seed,
                            "arm": arm,
                            "nrmse_1": res["eval/nrmse"],
                            "vrmse_1": res["eval/vrmse"],
                            "nrmse_5": roll["model"]["nrmse"]["mean_5"],
                            "persist_nrmse_1": res["eval/persistence_nrmse"],
                            "persist_vrmse_1": res["eval/persistence_vrmse"],
                            "persist_nrmse_5": roll["persistence"]["nrmse"]["mean_5"],
                        }
                    )
    wall = time.time() - t0
    table = summarize(runs)
    report(root, table, cfg, wall)
    return write_results(root, {"runs": runs, "summary": table, "wall_time_s": wall})


def _mean_se(xs) -> tuple[float, float]:
    xs = np.asarray(xs, np.float64)
    se = xs.std(ddof=1) / np.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return float(xs.mean()), float(se)


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard error over seeds of every (target, n_train, arm), plus persistence."""
    rows = []
    keys = sorted({(r["target"], r["n_train"]) for r in runs})
    for target, n in keys:
        group = [r for r in runs if (r["target"], r["n_train"]) == (target, n)]
        arms = [a for a in ARMS if any(r["arm"] == a for r in group)]
        for arm in arms + ["persistence"]:
            sel = group if arm == "persistence" else [r for r in group if r["arm"] == arm]
            pre = "persist_" if arm == "persistence" else ""
            row = {"target": target, "n_train": n, "arm": arm, "n_seeds": len(sel)}
            for m in ("nrmse_1", "vrmse_1", "nrmse_5"):
                row[m] = _mean_se([r[pre + m] for r in sel])
            rows.append(row)
    return rows


def report(root: str, table: list[dict], cfg: TransferConfig, wall: float) -> str:
    """WORKDIR/report.md: the table with its command, seeds and wall time."""
    fmt = lambda ms: f"{ms[0]:.4f} ± {ms[1]:.4f}" if np.isfinite(ms[1]) else f"{ms[0]:.4f}"
    s = cfg.study
    lines = [
        "# Surrogate transfer study",
        "",
        f"command: `{' '.join(['python'] + sys.argv) if sys.argv[0].endswith('.py') else '...'}`",
        "",
        f"study: `{json.dumps(dataclasses.asdict(s))}`",
        "",
        f"seeds: {list(s.seeds)}; wall time: {wall / 60:.1f} min",
        "",
        "held-out target trajectories; mean ± standard error over seeds",
        "",
        "| target | traj | arm | NRMSE 1-step | VRMSE 1-step | NRMSE 5-step mean |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['target']} | {r['n_train']} | {r['arm']} | {fmt(r['nrmse_1'])} | "
            f"{fmt(r['vrmse_1'])} | {fmt(r['nrmse_5'])} |"
        )
    path = os.path.join(root, "report.md")
    os.makedirs(root, exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(cfg: TransferConfig) -> dict:
    """Runs the study, prints the table and where the results and plots are."""
    out = run_study(cfg)
    root = os.path.abspath(cfg.workdir)
    print(open(os.path.join(root, "report.md")).read())
    print(f"results: {root}/results.json\nreport:  {root}/report.md")
    for png in sorted(glob.glob(os.path.join(root, "**", "*.png"), recursive=True)):
        print(f"plot:    {png}")
    return out


if __name__ == "__main__":
    jaxfm.configure_cpu()
    main(cli(TransferConfig, PRESETS, doc=__doc__))
