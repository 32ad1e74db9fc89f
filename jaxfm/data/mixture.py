"""Multi-system sampling: one system per micro-batch, deterministic and resumable.

MPP (McCabe et al. 2023, ``MultisetSampler``) draws one sub-dataset per micro-batch, so a batch
has one set of fields, and accumulates gradients over several micro-batches, so one optimiser
step mixes systems. :class:`MixtureBatches` is a random-access source whose element ``m`` is the
whole micro-batch ``m``:

* system ``s_m`` ~ ``weights`` (uniform by default), drawn from ``default_rng([seed, m])``;
* its ``batch_size`` window indices drawn uniformly (with replacement) from that system's
  source with ``default_rng([seed, m, 1])``.

Everything is a pure function of ``(seed, m)``: no hidden RNG state, so resuming at step ``m``
(e.g. restoring a Grain iterator whose state is ``{"next_index": m}``) replays exactly the same
stream, and process ``p`` of ``P`` can take rows ``p::P`` of the same micro-batch
(``shard=(p, P)``): every process then sees the same system. With gradient accumulation over
``k`` micro-batches, optimiser step ``i`` consumes micro-batches ``i·k .. i·k + k - 1``.

Element ``m`` is a dict of stacked window arrays (see :mod:`jaxfm.data.windows`):
``x (b, n_steps_input, *spatial, C)``, ``y (b, n_steps_output, *spatial, C)``,
``field_ids (C,)``, ``system ()``, ``traj (b,)``, ``start (b,)``, with
``b = batch_size / shard count``. Sources of different systems may differ in C and grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import numpy as np


class MixtureBatches:
    """Random-access micro-batches, one system each (see the module docstring).

    Args:
        sources: one random-access window source per system.
        batch_size: windows per micro-batch (over all processes).
        seed: stream seed.
        weights: relative system weights (default uniform).
        length: micro-batches per epoch (MPP uses 2000); ``__len__``.
        shard: ``(process_index, process_count)``; this process gets rows
            ``process_index::process_count`` of each micro-batch.
    """

    def __init__(
        self,
        sources: Sequence,
        batch_size: int,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        length: int = 2000,
        shard: tuple[int, int] = (0, 1),
    ):
        if not sources:
            raise ValueError("MixtureBatches needs at least one source")
        if any(len(s) == 0 for s in sources):
            raise ValueError(f"empty source among {[repr(s) for s in sources]}")
        w = np.ones(len(sources)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(sources),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights {weights} must be {len(sources)} non-negative numbers")
        index, count = shard
        if batch_size % count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the process count {count}: "
                f"each process would get {batch_size / count:g} rows"
            )
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} not in [0, {count})")
        self.sources = list(sources)
        self.p = w / w.sum()
        self.batch_size, self.seed, self.length, self.shard = batch_size, seed, length, shard

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"MixtureBatches(sources={[repr(s) for s in self.sources]}, "
            f"batch_size={self.batch_size}, seed={self.seed}, p={self.p.round(6).tolist()}, "
            f"length={self.length}, shard={self.shard})"
        )

    def system_of(self, m: int) -> int:
        """Index (into ``sources``) of the system of micro-batch ``m``."""
        return int(np.random.default_rng([self.seed, m]).choice(len(self.sources), p=self.p))

    def __getitem__(self, m: int) -> dict:
        m = int(m)
        if m < 0:
            raise IndexError(f"micro-batch index {m} must be >= 0")
        src = self.sources[self.system_of(m)]
        rows = np.random.default_rng([self.seed, m, 1]).integers(len(src), size=self.batch_size)
        index, count = self.shard
        items = [src[int(i)] for i in rows[index::count]]
        out = {k: np.stack([it[k] for it in items]) for k in ("x", "y", "traj", "start")}
        out["field_ids"] = items[0]["field_ids"]
        out["system"] = items[0]["system"]
        return out


def mixture_dataset(
    sources: Sequence, batch_size: int, seed: int = 0, weights=None, length: int = 2000,
    shard: tuple[int, int] = (0, 1),
) -> grain.MapDataset:
    """:class:`MixtureBatches` as a ``grain.MapDataset`` (iterate, checkpoint, ``.map``...).

    Use ``.repeat()`` for more than one epoch: micro-batch ``m`` of the repeated dataset is
    ``m mod length`` of the first epoch, so repeated epochs differ only with distinct
    seeds; pass ``length`` large enough for the run instead when every step must be fresh.
    """
    return grain.MapDataset.source(
        MixtureBatches(sources, batch_size, seed, weights, length, shard)
    )
