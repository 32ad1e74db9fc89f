"""The device mesh, built from the ``parallel`` config section.

Axes are always ``(data, fsdp, tensor, expert)``, so rule tables and sharding annotations
never depend on which strategy a run uses; unused axes have size 1. Axis types are Auto
(XLA propagates shardings from parameters and batch), which works on jax 0.11 and 0.12.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfm.parallel.options import ParallelConfig

AXES = ("data", "fsdp", "tensor", "expert")
BATCH_AXES = ("data", "fsdp", "expert")
"""Mesh axes that split the batch: fsdp and expert parallelism are data parallel too."""


def mesh_shape(cfg: ParallelConfig, n_devices: int) -> tuple[int, int, int, int]:
    """Resolves -1 entries of (data, fsdp, tensor, expert) so their product is n_devices."""
    sizes = [cfg.data, cfg.fsdp, cfg.tensor, cfg.expert]
    if sum(s == -1 for s in sizes) > 1:
        raise ValueError(
            f"at most one mesh axis may be -1, got data={cfg.data} "
            f"fsdp={cfg.fsdp} tensor={cfg.tensor} expert={cfg.expert}"
        )
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes) or n_devices % known:
        raise ValueError(
            f"mesh data={cfg.data} x fsdp={cfg.fsdp} x tensor={cfg.tensor} x "
            f"expert={cfg.expert} does not divide {n_devices} devices"
        )
    sizes = [n_devices // known if s == -1 else s for s in sizes]
    if math.prod(sizes) != n_devices:
        raise ValueError(
            f"mesh {dict(zip(AXES, sizes))} has {math.prod(sizes)} devices, "
            f"but {n_devices} are available; use -1 on one axis to fill"
        )
    return tuple(sizes)


def make_mesh(cfg: ParallelConfig | None = None, devices=None) -> Mesh:
    """A Mesh over ``devices`` (default: all, across processes) with axes ``AXES``."""
    cfg = cfg or ParallelConfig()
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(cfg, len(devices))
    auto = (jax.sharding.AxisType.Auto,) * len(AXES)
    if len(devices) == jax.device_count():
        # jax.make_mesh orders devices for the physical topology and keeps each process's
        # devices contiguous along the leading (data) axis. Positional: the keyword changed
        # name between jax 0.11 and 0.12.
        return jax.make_mesh(shape, AXES, axis_types=auto, devices=devices)
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=auto)


def batch_size_per_shard(mesh: Mesh) -> int:
    """Number of batch shards: the product of the batch axes' sizes."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading (batch) dimension split over ``BATCH_AXES``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated sharding on ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())
