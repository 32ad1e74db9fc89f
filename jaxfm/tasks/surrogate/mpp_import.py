"""The MPP checkpoint import (``experiments.mpp_import``): :func:`import_mpp` writes a released
MPP checkpoint as a jaxfm surrogate run; the command's config, presets and arguments.

``python -m experiments.mpp_import [PRESET] FILE --workdir W [overrides]``: the preset
(default ``default``) gives the data the imported run names (the systems a rollout of W
evaluates) and the non-architecture model fields; the architecture comes from FILE.

:func:`import_mpp` writes ``WORKDIR/config.json`` (a :class:`SurrogateExperiment` whose
``model.avit`` is the checkpoint's architecture) and an Orbax checkpoint (step 0) with the
state layout and metadata (config, field and system registries) that :func:`jaxfm.train.run`
saves, so ``--init_from WORKDIR`` and ``experiments.surrogate_rollout`` take it like one of our
pretraining runs; ``WORKDIR/results.json["mpp_import"]`` records the file, the row map
(:func:`jaxfm.models.mpp_checkpoint.field_rows`) and ``prefer``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Sequence
from typing import Literal

import jax
from flax import nnx

from jaxfm.ckpt.manager import CKPT_DIR, Checkpointer
from jaxfm.config import cli, to_dict
from jaxfm.data.fields import DEFAULT_FIELDS, NameRegistry
from jaxfm.models.mpp_checkpoint import (
    ARCHITECTURE_FIELDS,
    DEFAULT_PREFER,
    architecture_flags,
    field_rows,
    import_mpp_model,
    load_mpp_state_dict,
)
from jaxfm.models.mpp_convert import ConversionError
from jaxfm.models.surrogate import AViTConfig
from jaxfm.parallel.mesh import make_mesh
from jaxfm.parallel.options import ParallelConfig
from jaxfm.tasks.surrogate.pipeline import PDEDataConfig, SurrogateExperiment, check_field_slots
from jaxfm.tasks.surrogate.presets import finetune_m1, finetune_smoke
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from jaxfm.train import write_results
from jaxfm.train.step import Engine, split_model


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


def import_mpp(
    path: str, workdir: str, template: SurrogateExperiment, *, prefer: str = DEFAULT_PREFER
) -> dict:
    """Writes ``workdir`` as a jaxfm surrogate run holding MPP checkpoint ``path``.

    Args:
      path: MPP's ``torch.save`` file.
      workdir: the run directory to write (must not hold checkpoints yet).
      template: a :class:`SurrogateExperiment` giving every
        section but the architecture (data systems for rollouts, training settings for a
        later fine-tuning, non-architecture ``model.avit`` fields such as ``attn_impl``).
      prefer: MPP data set whose rows the shared velocity fields take.

    Returns:
      The ``mpp_import`` record written to ``WORKDIR/results.json``.
    """
    sd = load_mpp_state_dict(path)
    keep = {
        f.name: getattr(template.model.avit, f.name)
        for f in dataclasses.fields(AViTConfig)
        if f.name not in ARCHITECTURE_FIELDS
    }
    registry = NameRegistry(DEFAULT_FIELDS, kind="field")
    model = import_mpp_model(
        sd,
        fields=registry.names,
        prefer=prefer,
        n_fields=max(template.model.avit.n_fields, len(registry)),
        seed=template.train.seed,
        **keep,
    )
    workdir = os.path.abspath(workdir)
    ckdir = os.path.join(workdir, CKPT_DIR)
    if os.path.isdir(ckdir) and any(d.isdigit() for d in os.listdir(ckdir)):
        raise ConversionError(f"{workdir} already holds checkpoints; import into a new workdir")
    run_cfg = dataclasses.replace(
        template,
        workdir=workdir,
        init_from=None,
        model=dataclasses.replace(template.model, arch="avit", avit=model.cfg),
    )
    check_field_slots(run_cfg.model, len(registry))
    task = SurrogateTask(run_cfg.model)
    mesh = make_mesh(run_cfg.parallel)
    engine = Engine(task, run_cfg.train, None, None, mesh, run_cfg.parallel.strategy)
    state = engine.init(run_cfg.train.seed)
    _, params, frozen, _ = split_model(model, task)
    for part, tree in (("params", params), ("frozen", frozen)):
        state[part] = jax.device_put(nnx.to_pure_dict(tree), engine.state_sharding[part])
    config = to_dict(run_cfg)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    meta = {
        "config": config,
        "fields": list(registry.names),
        "systems": list(template.data.systems),
    }
    ckpt = Checkpointer(ckdir, run_cfg.ckpt)
    try:
        ckpt.save(0, state, meta=meta)
    finally:
        ckpt.close()
    rows = field_rows(registry.names, prefer)
    record = {
        "source": os.path.abspath(path),
        "prefer": prefer,
        "field_rows": {registry.names[j]: r for j, r in rows.items()},
        "fresh_rows": [n for j, n in enumerate(registry.names) if j not in rows],
        "architecture_flags": architecture_flags(model.cfg),
    }
    write_results(workdir, {"mpp_import": record})
    return record
