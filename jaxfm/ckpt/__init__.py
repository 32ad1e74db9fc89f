"""jaxfm.ckpt: Orbax checkpoint manager wrapper (item names, restore order, resharding)."""

from jaxfm.ckpt.manager import (
    CKPT_DIR,
    DATA_ITER,
    META,
    STATE,
    Checkpointer,
    CheckpointError,
    checkpoint_dir,
)
from jaxfm.ckpt.options import CkptConfig

__all__ = [
    "CKPT_DIR",
    "DATA_ITER",
    "META",
    "STATE",
    "CheckpointError",
    "Checkpointer",
    "CkptConfig",
    "checkpoint_dir",
]
