"""Settings of checkpointing (the ``ckpt`` section of every experiment)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class CkptConfig:
    """Orbax checkpoints under WORKDIR/checkpoints."""

    every: int = 500
    """Save every N steps (0: only at the end and on SIGTERM)."""
    keep: int = 3
    """Keep the newest N checkpoints."""
    keep_best: int = 1
    """Also keep the best N by ``best_metric`` (0: none)."""
    best_metric: str = "eval/loss"
    """Metric that ranks checkpoints for keep_best."""
    best_mode: Literal["min", "max"] = "min"
    """Whether smaller or larger best_metric is better."""
    async_save: bool = True
    """Write checkpoints in a background thread while training continues."""

    def validate(self) -> list[tuple[str, str]]:
        """(key, problem) of every setting that cannot work."""
        bad = [(k, f"must be >= 0, got {getattr(self, k)}") for k in ("every", "keep_best")]
        bad = [b for b in bad if getattr(self, b[0]) < 0]
        if self.keep < 1:
            bad.append(("keep", f"must be >= 1, got {self.keep}"))
        return bad
