"""Settings of the device mesh (the ``parallel`` section of every experiment)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """Device mesh with axes (data, fsdp, tensor, expert) and the sharding rule table."""

    strategy: Literal["dp", "fsdp", "fsdp_ep"] = "dp"
    """Rule table: dp replicates parameters; fsdp shards them over the fsdp axis; fsdp_ep
    also shards experts over the expert axis."""
    data: int = -1
    """Size of the data axis (-1: all devices left after the other axes)."""
    fsdp: int = 1
    """Size of the fsdp axis (-1: all devices left)."""
    tensor: int = 1
    """Size of the tensor axis."""
    expert: int = 1
    """Size of the expert axis."""
    distributed: Literal["auto", "off"] = "auto"
    """auto: initialise jax.distributed when SLURM, Kubernetes or JAX_COORDINATOR_ADDRESS
    variables say this is one process of many; off: single process."""
