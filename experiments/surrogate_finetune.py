"""Transfer fine-tuning of a (pretrained) surrogate on an unseen system, or a baseline from scratch.

    python experiments/surrogate_finetune.py smoke --init_from runs/sur-pre-smoke
    python experiments/surrogate_finetune.py m1 --init_from runs/sur-pre --data.n_train 4
    python experiments/surrogate_finetune.py m1 --model.arch fno          # FNO baseline
    python experiments/surrogate_finetune.py m01 --model.freeze middle    # MPP "frozen"
    python experiments/surrogate_finetune.py m1 --parallel.strategy fsdp  # sharded

Without ``--init_from`` the same AViT trains from scratch (the transfer control). The field
vocabulary already holds rows for density and pressure that pretraining never touched (they
play MPP's appended rows). Writes the engine's files plus rollout.json and loss.png.
"""

from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jaxfm  # noqa: E402
from jaxfm.ckpt import CkptConfig  # noqa: E402
from jaxfm.config import cli  # noqa: E402
from jaxfm.models.fno import FNOConfig  # noqa: E402
from jaxfm.models.surrogate import avit_config  # noqa: E402
from jaxfm.models.unet import UNetConfig  # noqa: E402
from jaxfm.tasks.surrogate.pipeline import (  # noqa: E402
    PAD_FIELDS,
    PDEDataConfig,
    SurrogateExperiment,
    train,
)
from jaxfm.tasks.surrogate.task import SurrogateTaskConfig  # noqa: E402
from jaxfm.train import TrainConfig, write_results  # noqa: E402
from jaxfm.train.plots import plot_metrics  # noqa: E402


def _task(avit: str, n_in: int, width: int) -> SurrogateTaskConfig:
    return SurrogateTaskConfig(
        avit=avit_config(avit),
        fno=FNOConfig(n_channels=PAD_FIELDS, n_steps_input=n_in, width=width, modes=8, depth=4),
        unet=UNetConfig(n_channels=PAD_FIELDS, n_steps_input=n_in, base=width // 2, levels=2),
    )


def smoke() -> SurrogateExperiment:
    """About a minute on CPU: compressible M=1.0 at 32x32, 2 trajectories, 20 steps."""
    return SurrogateExperiment(
        workdir="runs/surrogate-finetune-smoke",
        model=dataclasses.replace(
            _task("smoke", 4, 16),
            fno=FNOConfig(n_channels=PAD_FIELDS, n_steps_input=4, width=8, modes=4, depth=2),
        ),
        # 2 held-out trajectories x 6 windows = 12 eval examples >= 8 data-parallel shards
        data=PDEDataConfig(
            systems=("compressible_m1",),
            n_train=2,
            n_eval=2,
            resolution=32,
            n_steps=10,
            epoch_batches=200,
        ),
        train=TrainConfig(
            steps=20, batch_size=8, lr=1e-3, warmup_steps=2, log_every=5, eval_batches=2
        ),
        ckpt=CkptConfig(every=10),
    )


def m1() -> SurrogateExperiment:
    """Compressible Euler, M=1.0 ("far" transfer), 64x64, 16 training trajectories."""
    return SurrogateExperiment(
        workdir="runs/surrogate-finetune-m1",
        model=_task("tiny", 4, 32),
        data=PDEDataConfig(
            systems=("compressible_m1",),
            n_train=16,
            n_eval=8,
            resolution=64,
            cache_dir="runs/pde_cache",
        ),
        train=TrainConfig(
            steps=600,
            batch_size=8,
            lr=1e-3,
            warmup_steps=30,
            log_every=25,
            eval_every=200,
            eval_batches=16,
        ),
        ckpt=CkptConfig(every=200),
    )


def m01() -> SurrogateExperiment:
    """Compressible Euler, M=0.1 ("near" transfer)."""
    cfg = m1()
    return dataclasses.replace(
        cfg,
        workdir="runs/surrogate-finetune-m01",
        data=dataclasses.replace(cfg.data, systems=("compressible_m0.1",)),
    )


PRESETS = {"smoke": smoke, "m1": m1, "m01": m01}


def main(cfg: SurrogateExperiment) -> dict:
    """Fine-tunes (or trains from scratch), evaluates one-step and rollout errors."""
    results = train(cfg)
    plot = plot_metrics(
        cfg.workdir,
        ["loss", "eval/loss", "eval/nrmse", "eval/persistence_nrmse"],
        title=f"fine-tuning on {','.join(cfg.data.systems)}",
        filename="loss.png",
    )
    return write_results(cfg.workdir, {"plots": [plot]}) if plot else results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    main(cli(SurrogateExperiment, PRESETS, doc=__doc__))
