"""jaxfm.ckpt: Orbax checkpoint manager wrapper (item names, restore order, resharding).

Names load on first use (:mod:`jaxfm._lazy`): ``CkptConfig`` alone does not start Orbax.
"""

from jaxfm._lazy import lazy_exports

_MANAGER = "jaxfm.ckpt.manager"
__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{
            name: _MANAGER
            for name in (
                "CKPT_DIR",
                "DATA_ITER",
                "META",
                "STATE",
                "Checkpointer",
                "CheckpointError",
                "IncompatibleCheckpointError",
                "DiskFullError",
                "checkpoint_dir",
                "read_meta",
            )
        },
        "CkptConfig": "jaxfm.ckpt.options",
    },
)
