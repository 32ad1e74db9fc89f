"""Multi-physics pretraining of the MPP-style AViT (system-uniform sampling).

    python experiments/surrogate_pretrain.py smoke --workdir runs/sur-pre-smoke
    python experiments/surrogate_pretrain.py tiny --workdir runs/sur-pre --train.steps 3000
    python experiments/surrogate_pretrain.py Ti --workdir runs/sur-pre-Ti   # GPU

Pretrains on shallow water, FitzHugh-Nagumo, incompressible NS and Gray-Scott (compressible
flow is held out for transfer). Writes config.json, metrics.jsonl, checkpoints/, results.json
(one-step eval/* beside eval/persistence_*), rollout.json and loss.png in the workdir.
"""

from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jaxfm  # noqa: E402
from jaxfm.ckpt import CkptConfig  # noqa: E402
from jaxfm.config import cli  # noqa: E402
from jaxfm.models.surrogate import avit_config  # noqa: E402
from jaxfm.tasks.surrogate.pipeline import PDEDataConfig, SurrogateExperiment, train  # noqa: E402
from jaxfm.tasks.surrogate.task import SurrogateTaskConfig  # noqa: E402
from jaxfm.train import TrainConfig, write_results  # noqa: E402
from jaxfm.train.plots import plot_metrics  # noqa: E402


def smoke() -> SurrogateExperiment:
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


def tiny() -> SurrogateExperiment:
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
            eval_batches=16,
        ),
        ckpt=CkptConfig(every=500),
    )


def Ti() -> SurrogateExperiment:  # noqa: N802 (MPP's preset name)
    """MPP-AViT-Ti (patch 16, full-state head as MPP) at 128x128; a GPU run."""
    base = tiny()
    return dataclasses.replace(
        base,
        workdir="runs/surrogate-pretrain-Ti",
        model=SurrogateTaskConfig(avit=avit_config("Ti")),
        data=dataclasses.replace(base.data, resolution=128, n_steps_input=16, n_steps=33),
        train=dataclasses.replace(
            base.train, steps=50_000, batch_size=16, lr=3e-4, weight_decay=1e-3, warmup_steps=1000
        ),
    )


def _tiny_with(name: str, mixer: str, ffn: str = "mlp") -> SurrogateExperiment:
    """``tiny`` with ``mixer`` over time and space and ``ffn`` in the space blocks."""
    base = tiny()
    avit = dataclasses.replace(base.model.avit, time_mixer=mixer, space_mixer=mixer, ffn=ffn)
    return dataclasses.replace(
        base,
        workdir=f"{base.workdir}-{name}",
        model=dataclasses.replace(base.model, avit=avit),
    )


def tiny_mamba() -> SurrogateExperiment:
    """``tiny`` with Mamba (bidirectional selective scan) mixers over time and space."""
    return _tiny_with("mamba", "mamba")


def tiny_mamba2() -> SurrogateExperiment:
    """``tiny`` with Mamba-2 (SSD, bidirectional) mixers over time and space."""
    return _tiny_with("mamba2", "mamba2")


def tiny_moe() -> SurrogateExperiment:
    """``tiny`` with a top-2 mixture-of-experts feed-forward in the space blocks."""
    return _tiny_with("moe", "attention", "moe")


PRESETS = {
    "smoke": smoke,
    "tiny": tiny,
    "tiny_mamba": tiny_mamba,
    "tiny_mamba2": tiny_mamba2,
    "tiny_moe": tiny_moe,
    "Ti": Ti,
}


def main(cfg: SurrogateExperiment) -> dict:
    """Pretrains, evaluates one-step and rollout errors, plots the losses."""
    results = train(cfg)
    plot = plot_metrics(
        cfg.workdir,
        ["loss", "eval/loss", "eval/nrmse", "eval/persistence_nrmse"],
        title="surrogate pretraining",
        filename="loss.png",
    )
    return write_results(cfg.workdir, {"plots": [plot]}) if plot else results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    main(cli(SurrogateExperiment, PRESETS, doc=__doc__))
