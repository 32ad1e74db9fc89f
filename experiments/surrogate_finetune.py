"""Transfer fine-tuning of a (pretrained) surrogate on an unseen system, or a baseline from scratch.

    python -m experiments.surrogate_finetune smoke --init_from runs/sur-pre-smoke
    python -m experiments.surrogate_finetune m1 --init_from runs/sur-pre --data.n_train 4
    python -m experiments.surrogate_finetune m1 --model.arch fno          # FNO baseline
    python -m experiments.surrogate_finetune m01 --model.freeze middle    # MPP "frozen"
    python -m experiments.surrogate_finetune m1 --parallel.strategy fsdp  # sharded
    python -m experiments.surrogate_finetune smoke --init_from runs/own --data.paths my.hdf5

Without ``--init_from`` the same AViT trains from scratch (the transfer control). The field
vocabulary already holds rows for density and pressure that pretraining never touched (they
play MPP's appended rows); fields of ``--data.paths`` files that no registry has get new ids,
and a checkpoint with fewer rows than ``--model.avit.n_fields`` gains rows for them. Writes
the engine's files plus rollout.json and loss.png.
The presets live in ``jaxfm.tasks.surrogate.presets``.
"""

from __future__ import annotations

import jaxfm
from jaxfm.config import run_cli
from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment
from jaxfm.tasks.surrogate.presets import FINETUNE_PRESETS, finetune

PRESETS = dict(FINETUNE_PRESETS)
smoke, m1, m01 = PRESETS["smoke"], PRESETS["m1"], PRESETS["m01"]


def main(cfg: SurrogateExperiment) -> dict:
    """Fine-tunes (or trains from scratch), evaluates one-step and rollout errors."""
    return finetune(cfg)


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, SurrogateExperiment, PRESETS, doc=__doc__)
