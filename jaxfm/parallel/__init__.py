"""jaxfm.parallel: device mesh, logical-axis sharding rules, multi-host initialisation.

Names load on first use (:mod:`jaxfm._lazy`): ``ParallelConfig`` alone starts no backend.
"""

from jaxfm._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "initialize": "jaxfm.parallel.distributed",
        "AXES": "jaxfm.parallel.mesh",
        "BATCH_AXES": "jaxfm.parallel.mesh",
        "batch_sharding": "jaxfm.parallel.mesh",
        "make_mesh": "jaxfm.parallel.mesh",
        "replicated": "jaxfm.parallel.mesh",
        "ParallelConfig": "jaxfm.parallel.options",
        "RULES": "jaxfm.parallel.rules",
        "logical_to_spec": "jaxfm.parallel.rules",
        "state_shardings": "jaxfm.parallel.rules",
    },
)
