"""Import a released MPP (PyTorch) checkpoint as a jaxfm surrogate run.

    python -m experiments.mpp_import MPP_AViT_B.tar --workdir runs/mpp-B
    python -m experiments.mpp_import smoke ckpt.tar --workdir runs/mpp-smoke --prefer incompNS
    python -m experiments.surrogate_rollout default --workdir runs/mpp-B     # zero-shot
    python -m experiments.surrogate_finetune m1 --init_from runs/mpp-B ARCHITECTURE_FLAGS

The file is read without torch and without running pickled code (only tensors are rebuilt).
The field rows are renumbered from MPP's (use_all_fields) to jaxfm's registry; --prefer picks
which of MPP's two velocity rows (incompNS or compNS) the tied velocity fields take. The
workdir holds config.json, an Orbax checkpoint (step 0) and results.json["mpp_import"] (the row
map and the --model.avit flags a fine-tuning run needs, also printed). See docs/surrogate.md.
"""

from __future__ import annotations

import sys

import jaxfm
from jaxfm.tasks.surrogate.mpp_import import PRESETS, ImportConfig, parse_import_args, run_import

smoke, default = PRESETS["smoke"], PRESETS["default"]


def main(cfg: ImportConfig) -> dict:
    """Writes the jaxfm workdir of the MPP checkpoint ``cfg.checkpoint``."""
    return run_import(cfg)


if __name__ == "__main__":
    jaxfm.configure_cpu()
    main(parse_import_args(sys.argv[1:], doc=__doc__))
