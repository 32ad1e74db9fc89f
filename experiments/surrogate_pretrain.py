"""Multi-physics pretraining of the MPP-style AViT (system-uniform sampling).

    python -m experiments.surrogate_pretrain smoke --workdir runs/sur-pre-smoke
    python -m experiments.surrogate_pretrain tiny --workdir runs/sur-pre --train.steps 3000
    python -m experiments.surrogate_pretrain Ti --workdir runs/sur-pre-Ti   # GPU
    python -m experiments.surrogate_pretrain smoke --data.paths runs/data --workdir runs/own

Pretrains on shallow water, FitzHugh-Nagumo, incompressible NS and Gray-Scott (compressible
flow is held out for transfer), simulated, or on ``--data.paths``: Well dataset directories
(or a root of them, like `make data`'s runs/data), Well or PDEBench files, simulator names
(train split trains, valid evaluates; see ``jaxfm.tasks.surrogate.sources``). Writes
config.json, metrics.jsonl, checkpoints/, results.json (one-step eval/* beside
eval/persistence_*), rollout.json and loss.png in the workdir.
The smoke, tiny and Ti presets live in ``jaxfm.tasks.surrogate.presets``.
"""

from __future__ import annotations

import dataclasses

import jaxfm
from jaxfm.config import run_cli
from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment
from jaxfm.tasks.surrogate.presets import PRETRAIN_PRESETS, pretrain, pretrain_tiny

smoke = PRETRAIN_PRESETS["smoke"]
tiny = pretrain_tiny
Ti = PRETRAIN_PRESETS["Ti"]  # noqa: N816 (MPP's preset name)


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
    return pretrain(cfg)


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, SurrogateExperiment, PRESETS, doc=__doc__)
