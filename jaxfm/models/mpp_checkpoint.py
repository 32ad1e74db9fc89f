"""Released MPP checkpoints for jaxfm: read the file, renumber the field rows to a jaxfm
field registry (the workdir writer is :mod:`jaxfm.tasks.surrogate.mpp_import`).

Design note. MPP's released AViTs were trained with ``use_all_fields`` (its
``config/mpp_avit_*_config.yaml``; ``tie_fields`` off), which numbers the embedding rows by
walking ``DSET_NAME_TO_OBJECT`` (``data_utils/datasets.py``) in order and appending each data
set's ``field_names``: shallow water ``h`` (row 0), incompressible NS ``Vx, Vy, particles``
(1-3), diffusion-reaction ``activator, inhibitor`` (4-5), compressible NS ``Vx, Vy, density,
pressure`` (6-9); rows 10-11 of ``n_states = 12`` are never used. jaxfm's registry
(:data:`jaxfm.data.fields.DEFAULT_FIELDS`) ties same-named fields across systems and puts
density and pressure at ids 6 and 7, so copying rows one to one would feed density through
MPP's compressible x-velocity row. :func:`field_rows` maps every jaxfm field id to the MPP row
it stands for (:data:`MPP_FIELD_ROWS`).

MPP keeps ``velocity_x`` / ``velocity_y`` twice (incompressible rows 1-2, compressible rows
6-7); a jaxfm model has one row per name, so the import takes those of one system, ``prefer``:
``compNS`` (the default) for compressible targets (jaxfm's fine-tuning systems), ``incompNS``
for incompressible ones. Names MPP never saw (``concentration_A/B``, ``u``) keep the fresh
initialisation of a new model, as fields appended for fine-tuning do in MPP; so do the rows
beyond the registry.

The field registry is an argument (``fields``: names in id order, e.g.
``jaxfm.data.fields.DEFAULT_FIELDS``) so this module stays below the data layer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from jaxfm.models.mpp_convert import ConversionError, convert_mpp, unwrap_state_dict
from jaxfm.models.surrogate import AViT, AViTConfig
from jaxfm.models.torch_checkpoint import read_torch_checkpoint

#: MPP's data sets in ``DSET_NAME_TO_OBJECT`` order (the order of their rows).
MPP_SYSTEMS = ("swe", "incompNS", "diffre2d", "compNS")

#: (MPP data set, jaxfm field name) of each embedding row of a released MPP checkpoint
#: (``use_all_fields``; MPP's names h; Vx, Vy, particles; activator, inhibitor; Vx, Vy,
#: density, pressure).
MPP_FIELD_ROWS: tuple[tuple[str, str], ...] = (
    ("swe", "h"),
    ("incompNS", "velocity_x"),
    ("incompNS", "velocity_y"),
    ("incompNS", "tracer"),
    ("diffre2d", "activator"),
    ("diffre2d", "inhibitor"),
    ("compNS", "velocity_x"),
    ("compNS", "velocity_y"),
    ("compNS", "density"),
    ("compNS", "pressure"),
)

#: the data set whose rows shared names take by default (jaxfm fine-tunes on compressible flow).
DEFAULT_PREFER = "compNS"


def load_mpp_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """MPP's model state dict from a ``torch.save`` file (whole checkpoint or state dict),
    read without torch and without running pickled code; ``module.`` prefixes stripped."""
    path = os.fspath(path)
    obj = read_torch_checkpoint(path)
    sd = unwrap_state_dict(obj, where=path)
    return {k.removeprefix("module."): np.asarray(v) for k, v in sd.items()}


def field_rows(fields: Sequence[str], prefer: str = DEFAULT_PREFER) -> dict[int, int]:
    """jaxfm field id -> MPP row, for every field of ``fields`` (id order) that MPP has.

    A name MPP has in several data sets takes the row of ``prefer``, else the first one.
    """
    if prefer not in MPP_SYSTEMS:
        raise ValueError(f"unknown MPP data set {prefer!r}; choose one of {MPP_SYSTEMS}")
    out = {}
    for i, name in enumerate(fields):
        rows = [r for r, (_, f) in enumerate(MPP_FIELD_ROWS) if f == name]
        if rows:
            preferred = [r for r in rows if MPP_FIELD_ROWS[r][0] == prefer]
            out[i] = (preferred or rows)[0]
    return out


def remap_field_rows(
    model: AViT, rows: Mapping[int, int], n_fields: int, *, rngs: nnx.Rngs | None = None
) -> AViT:
    """A copy of ``model`` (rows in MPP's ids) whose field embedding and output rows are
    renumbered: row ``j`` of the result is row ``rows[j]`` of ``model``; rows not in ``rows``
    keep a fresh initialisation (``rngs``)."""
    n_src = model.n_fields
    bad = {j: r for j, r in rows.items() if not (0 <= r < n_src and 0 <= j < n_fields)}
    if bad:
        raise ConversionError(f"field rows {bad} outside the checkpoint's {n_src} / {n_fields}")
    cfg = dataclasses.replace(model.cfg, n_fields=n_fields)
    out = AViT(cfg, rngs=rngs or nnx.Rngs(0))
    src = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    dst = nnx.to_pure_dict(nnx.state(out, nnx.Param))
    new = jax.tree.map(np.asarray, src)
    dst = jax.tree.map(np.array, dst)  # writable copies of the fresh rows
    j, r = np.asarray(list(rows), int), np.asarray(list(rows.values()), int)
    emb, fresh = new["fields"], dst["fields"]
    fresh["kernel"][j] = emb["kernel"][r]
    emb["kernel"] = fresh["kernel"]
    de, fresh = new["destem"], dst["destem"]
    fresh["out_kernel"][..., j] = de["out_kernel"][..., r]
    fresh["out_bias"][j] = de["out_bias"][r]
    de["out_kernel"], de["out_bias"] = fresh["out_kernel"], fresh["out_bias"]
    state = nnx.state(out, nnx.Param)
    nnx.replace_by_pure_dict(state, jax.tree.map(jax.numpy.asarray, new))
    nnx.update(out, state)
    return out


def import_mpp_model(
    state_dict_or_checkpoint: Mapping,
    *,
    fields: Sequence[str],
    prefer: str = DEFAULT_PREFER,
    n_fields: int | None = None,
    seed: int = 0,
    **overrides,
) -> AViT:
    """An AViT with a released MPP checkpoint's weights, its rows in jaxfm's field ids.

    Args:
      state_dict_or_checkpoint: MPP's state dict or whole checkpoint dict.
      fields: the field registry's names, in id order.
      prefer: MPP data set whose rows shared names (velocities) take.
      n_fields: rows of the result (default: the checkpoint's, at least ``len(fields)``).
      seed: initialisation of the rows MPP has no field for.
      overrides: non-architecture :class:`AViTConfig` fields (e.g. ``attn_impl``).
    """
    mpp = convert_mpp(state_dict_or_checkpoint, **overrides)
    n = n_fields or max(mpp.n_fields, len(fields))
    return remap_field_rows(mpp, field_rows(fields, prefer), n, rngs=nnx.Rngs(seed))


#: AViTConfig fields fixed by an MPP checkpoint (inferred from its shapes, or MPP's rules).
ARCHITECTURE_FIELDS = (
    "dim",
    "heads",
    "depth",
    "n_fields",
    "patch_strides",
    "num_buckets",
    "periodic_wrap",
    "delta",
)


def architecture_flags(avit: AViTConfig) -> list[str]:
    """``--model.avit.*`` flags that make a run build this architecture (what a fine-tuning
    run started with ``--init_from`` an imported workdir needs)."""
    out = []
    for name in ARCHITECTURE_FIELDS:
        value = getattr(avit, name)
        if isinstance(value, tuple):
            text = ",".join(map(str, value))
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        out += [f"--model.avit.{name}", text]
    return out
