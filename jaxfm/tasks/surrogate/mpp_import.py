"""The MPP checkpoint import command (``experiments.mpp_import``): its config, presets and
argument handling; the import itself is :func:`jaxfm.models.mpp_checkpoint.import_mpp`.

``python -m experiments.mpp_import [PRESET] FILE --workdir W [overrides]``: the preset
(default ``default``) gives the data the imported run names (the systems a rollout of W
evaluates) and the non-architecture model fields; the architecture comes from FILE.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from typing import Literal

from jaxfm.config import cli
from jaxfm.models.mpp_checkpoint import DEFAULT_PREFER, import_mpp
from jaxfm.parallel.options import ParallelConfig
from jaxfm.tasks.surrogate.pipeline import PDEDataConfig, SurrogateExperiment
from jaxfm.tasks.surrogate.presets import finetune_m1, finetune_smoke
from jaxfm.tasks.surrogate.task import SurrogateTaskConfig


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """Import a released MPP checkpoint as a jaxfm run (no training: no train/ckpt sections)."""

    checkpoint: str = ""
    """MPP's torch.save file (ckpt.tar / .pt; also accepted as the first argument)."""
    workdir: str = "runs/mpp-import"
    """The run directory to write: config.json, checkpoints/0, results.json."""
    prefer: Literal["compNS", "incompNS"] = DEFAULT_PREFER
    """MPP data set whose rows the shared velocity fields take: compNS (compressible targets)
    or incompNS (incompressible ones)."""
    seed: int = 0
    """Initialisation of the rows of fields MPP never saw."""
    model: SurrogateTaskConfig = dataclasses.field(default_factory=SurrogateTaskConfig)
    """Loss, freezing and the non-architecture AViT fields (attn_impl, drop_path, ...); the
    architecture (dim, heads, depth, strides, rows, wrap rule, full-state head) is MPP's."""
    data: PDEDataConfig = dataclasses.field(default_factory=PDEDataConfig)
    """Systems and windows recorded in config.json (what a rollout of the workdir evaluates)."""
    parallel: ParallelConfig = dataclasses.field(default_factory=ParallelConfig)
    """Device mesh the checkpoint is written from."""


def _from(run: SurrogateExperiment, workdir: str) -> ImportConfig:
    return ImportConfig(workdir=workdir, model=run.model, data=run.data, parallel=run.parallel)


def default() -> ImportConfig:
    """The fine-tuning preset m1's data: compressible Euler M=1.0, 64x64."""
    return _from(finetune_m1(), "runs/mpp-import")


def smoke() -> ImportConfig:
    """The fine-tuning smoke preset's data: compressible M=1.0, 32x32, 2 trajectories."""
    return _from(finetune_smoke(), "runs/mpp-import-smoke")


PRESETS = {"default": default, "smoke": smoke}


def parse_import_args(argv: Sequence[str], *, doc: str = "", prog: str | None = None):
    """``[PRESET] [FILE] [--key value ...]`` -> :class:`ImportConfig` (FILE = --checkpoint)."""
    argv = list(argv)
    head = []
    while argv and not argv[0].startswith("-") and len(head) < 2:
        head.append(argv.pop(0))
    preset = head.pop(0) if head and head[0] in PRESETS else "default"
    rest = (["--checkpoint", head[0]] if head else []) + argv
    cfg = cli(ImportConfig, PRESETS, [preset, *rest], doc=doc, prog=prog)
    if not cfg.checkpoint:
        raise SystemExit("error: no checkpoint file given (FILE or --checkpoint)")
    return cfg


def template(cfg: ImportConfig) -> SurrogateExperiment:
    """The run config the import completes with the checkpoint's architecture."""
    base = finetune_m1()
    return dataclasses.replace(
        base,
        workdir=cfg.workdir,
        model=cfg.model,
        data=cfg.data,
        parallel=cfg.parallel,
        train=dataclasses.replace(base.train, seed=cfg.seed),
    )


def run_import(cfg: ImportConfig) -> dict:
    """Imports, prints the commands that fine-tune and roll out the imported run."""
    record = import_mpp(cfg.checkpoint, cfg.workdir, template(cfg), prefer=cfg.prefer)
    flags = shlex.join(record["architecture_flags"])
    print(
        f"imported {cfg.checkpoint} into {cfg.workdir} (velocities from {cfg.prefer}; fresh "
        f"rows: {', '.join(record['fresh_rows'])})\n"
        f"fine-tune: python -m experiments.surrogate_finetune m1 --init_from {cfg.workdir} "
        f"{flags}\n"
        f"roll out:  python -m experiments.surrogate_rollout default --workdir {cfg.workdir}"
    )
    return record
