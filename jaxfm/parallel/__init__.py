"""jaxfm.parallel: device mesh, logical-axis sharding rules, multi-host initialisation."""

from jaxfm.parallel.distributed import initialize
from jaxfm.parallel.mesh import AXES, BATCH_AXES, batch_sharding, make_mesh, replicated
from jaxfm.parallel.options import ParallelConfig
from jaxfm.parallel.rules import RULES, logical_to_spec, state_shardings

__all__ = [
    "AXES",
    "BATCH_AXES",
    "RULES",
    "ParallelConfig",
    "batch_sharding",
    "initialize",
    "logical_to_spec",
    "make_mesh",
    "replicated",
    "state_shardings",
]
