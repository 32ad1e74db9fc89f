"""Presets of the surrogate pretraining and fine-tuning runs, and the two runs themselves
(train, then plot the losses). Shared by ``experiments.surrogate_pretrain``,
``experiments.surrogate_finetune``, the transfer study and the notebooks."""

from __future__ import annotations

import dataclasses
import os

from jaxfm.ckpt import CkptConfig
from jaxfm.models.fno import FNOConfig
from jaxfm.models.surrogate import avit_config
from jaxfm.models.unet import UNetConfig
from jaxfm.tasks.surrogate.pipeline import (
    PAD_FIELDS,
    PDEDataConfig,
    SurrogateExperiment,
    train,
)
from jaxfm.tasks.surrogate.sources import source_names
from jaxfm.tasks.surrogate.task import SurrogateTaskConfig
from jaxfm.train import TrainConfig, write_results
from jaxfm.train.plots import plot_metrics

# --- pretraining -------------------------------------------------------------------------


def pretrain_smoke() -> SurrogateExperiment:
    """About a minute on CPU: 1-block AViT, 4 systems at 32x32, 20 steps."""
    return SurrogateExperiment(
        workdir="runs/surrogate-pretrain-smoke",
        model=SurrogateTaskConfig(avit=avit_config("smoke")),
        data=PDEDataConfig(n_train=3, n_eval=1, resolution=32, n_steps=10, epoch_batches=200),
        train=TrainConfig(
            steps=20, batch_size=8, lr=1e-3, warmup_steps=2, log_every=5, eval_batches=2
        ),
        ckpt=CkptConfig(every=10),
    )


def pretrain_tiny() -> SurrogateExperiment:
    """The CPU transfer study's pretraining (sized to finish on 2 CPU cores): D 64, depth 4,
    patch 8, delta head, 64x64, 48 trajectories per system."""
    return SurrogateExperiment(
        workdir="runs/surrogate-pretrain-tiny",
        model=SurrogateTaskConfig(avit=avit_config("tiny")),
        data=PDEDataConfig(n_train=48, n_eval=8, resolution=64, cache_dir="runs/pde_cache"),
        train=TrainConfig(
            steps=3000,
            batch_size=8,
            lr=1e-3,
            warmup_steps=100,
            log_every=50,
            eval_every=500,
            eval_batches=16,  # 128 windows: 32 of each system, spread over its trajectories
        ),
        ckpt=CkptConfig(every=500),
    )


def pretrain_Ti() -> SurrogateExperiment:  # noqa: N802 (MPP's preset name)
    """MPP-AViT-Ti (patch 16, full-state head as MPP) at 128x128; a GPU run."""
    base = pretrain_tiny()
    return dataclasses.replace(
        base,
        workdir="runs/surrogate-pretrain-Ti",
        model=SurrogateTaskConfig(avit=avit_config("Ti")),
        data=dataclasses.replace(base.data, resolution=128, n_steps_input=16, n_steps=33),
        train=dataclasses.replace(
            base.train, steps=50_000, batch_size=16, lr=3e-4, weight_decay=1e-3, warmup_steps=1000
        ),
    )


def pretrain_demo() -> SurrogateExperiment:
    """`make demo`'s pretraining (about 2 minutes on 2 CPU cores): the demo AViT (D 64, depth
    2, patch 2, delta head) on the 4 pretraining systems at 16x16, 16 trajectories each, 800
    steps, trained on the increment loss: the lever that helped at this budget without
    destabilising long rollouts (``experiments.surrogate_ablation demo``)."""
    return SurrogateExperiment(
        workdir="runs/surrogate-pretrain-demo",
        model=SurrogateTaskConfig(avit=avit_config("demo"), loss="increment"),
        data=PDEDataConfig(n_train=16, n_eval=2, n_rollout=2, resolution=16, epoch_batches=200),
        train=TrainConfig(
            steps=800,
            batch_size=8,
            lr=2e-3,
            warmup_steps=40,
            log_every=50,
            eval_batches=0,
        ),
        ckpt=CkptConfig(every=400),
    )


PRETRAIN_PRESETS = {
    "smoke": pretrain_smoke,
    "demo": pretrain_demo,
    "tiny": pretrain_tiny,
    "Ti": pretrain_Ti,
}


def pretrain(cfg: SurrogateExperiment) -> dict:
    """Pretrains, evaluates one-step and rollout errors, plots the losses."""
    results = train(cfg)
    plot = plot_metrics(
        cfg.workdir,
        ["loss", "eval/loss", "eval/nrmse", "eval/persistence_nrmse"],
        title="surrogate pretraining",
        filename="loss.png",
    )
    return write_results(cfg.workdir, {"plots": [plot]}) if plot else results


# --- fine-tuning -------------------------------------------------------------------------


def _task(avit: str, n_in: int, width: int) -> SurrogateTaskConfig:
    return SurrogateTaskConfig(
        avit=avit_config(avit),
        fno=FNOConfig(n_channels=PAD_FIELDS, n_steps_input=n_in, width=width, modes=8, depth=4),
        unet=UNetConfig(n_channels=PAD_FIELDS, n_steps_input=n_in, base=width // 2, levels=2),
    )


def finetune_smoke() -> SurrogateExperiment:
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


def finetune_m1() -> SurrogateExperiment:
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
            eval_batches=0,  # every held-out window (8 trajectories x 17 starts = 136)
        ),
        ckpt=CkptConfig(every=200),
    )


def finetune_m01() -> SurrogateExperiment:
    """Compressible Euler, M=0.1 ("near" transfer)."""
    cfg = finetune_m1()
    return dataclasses.replace(
        cfg,
        workdir="runs/surrogate-finetune-m01",
        data=dataclasses.replace(cfg.data, systems=("compressible_m0.1",)),
    )


def finetune_demo() -> SurrogateExperiment:
    """`make demo`'s fine-tuning: compressible Euler M=1.0 at 16x16, 4 training trajectories,
    100 steps (increment loss, as its pretraining); 4 held-out
    trajectories (68 windows) scored and rolled out."""
    return SurrogateExperiment(
        workdir="runs/surrogate-finetune-demo",
        model=dataclasses.replace(_task("demo", 4, 16), loss="increment"),
        data=PDEDataConfig(
            systems=("compressible_m1",),
            n_train=4,
            n_eval=4,
            n_rollout=4,
            resolution=16,
            epoch_batches=200,
        ),
        train=TrainConfig(
            steps=100,
            batch_size=8,
            lr=2e-3,
            warmup_steps=5,
            log_every=25,
            eval_batches=0,
        ),
        ckpt=CkptConfig(every=100),
    )


FINETUNE_PRESETS = {
    "smoke": finetune_smoke,
    "demo": finetune_demo,
    "m1": finetune_m1,
    "m01": finetune_m01,
}


def finetune(cfg: SurrogateExperiment) -> dict:
    """Fine-tunes (or trains from scratch), evaluates one-step and rollout errors."""
    results = train(cfg)
    plot = plot_metrics(
        cfg.workdir,
        ["loss", "eval/loss", "eval/nrmse", "eval/persistence_nrmse"],
        title=f"fine-tuning on {','.join(os.path.basename(s) for s in source_names(cfg.data))}",
        filename="loss.png",
    )
    return write_results(cfg.workdir, {"plots": [plot]}) if plot else results
