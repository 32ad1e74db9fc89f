"""The Grain input pipeline every experiment uses.

    source -> shuffle (reseeded each epoch from the seed) -> repeat -> map (optional)
           -> this process's rows of each global batch -> batch -> [worker processes]

Multi-host: every process walks the same global order; process p takes rows
``[p * b, (p + 1) * b)`` of each global batch of ``B = b * process_count`` examples, which
is exactly the block of the global batch that its devices hold once
``jax.make_array_from_process_local_data`` assembles the global array (processes own
contiguous slices of the mesh's data axis). So N processes see the same global batches as
one process, and the losses match.

The iterator's state (``get_state``/``set_state``) is saved in every checkpoint, so a resumed
run continues the data stream exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grain
import numpy as np


class _ProcessRows(grain.MapDataset):
    """Rows of each global batch that belong to one process (see module docstring)."""

    def __init__(self, parent: grain.MapDataset, global_batch: int, index: int, count: int):
        super().__init__(parent)
        self._global, self._local, self._index = global_batch, global_batch // count, index

    def __len__(self) -> int:
        return (len(self._parent) // self._global) * self._local

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.slice(i)
        step, row = divmod(i, self._local)
        return self._parent[step * self._global + self._index * self._local + row]

    def __str__(self) -> str:
        return f"ProcessRows(global_batch={self._global}, process={self._index})"


def check_batch(
    global_batch: int, *, shards: int, process_count: int = 1, grad_accum: int = 1
) -> None:
    """Raises a ValueError that shows the arithmetic when a batch does not divide evenly."""
    if global_batch % process_count:
        raise ValueError(
            f"batch_size {global_batch} is not divisible by {process_count} "
            f"processes ({global_batch} / {process_count} = "
            f"{global_batch / process_count:g})"
        )
    if global_batch % grad_accum:
        raise ValueError(
            f"batch_size {global_batch} is not divisible by grad_accum "
            f"{grad_accum} ({global_batch / grad_accum:g} per micro-batch)"
        )
    micro = global_batch // grad_accum
    if micro % shards:
        raise ValueError(
            f"micro-batch {micro} (batch_size {global_batch} / grad_accum "
            f"{grad_accum}) is not divisible by the {shards} data-parallel "
            f"shards of the mesh ({micro} / {shards} = {micro / shards:g}); "
            f"use a multiple of {shards * grad_accum}"
        )


def make_dataset(
    source: Any,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    transform: Callable | None = None,
    process_index: int = 0,
    process_count: int = 1,
    worker_count: int = 0,
    drop_remainder: bool = True,
) -> grain.IterDataset:
    """Builds the per-process batched dataset.

    Args:
      source: random-access source (``__len__``, ``__getitem__``, stable ``__repr__``).
      batch_size: GLOBAL batch size (all processes together).
      seed: shuffle seed; epoch e uses a permutation derived from (seed, e).
      shuffle: shuffle examples (off for evaluation).
      num_epochs: passes over the source (None: forever).
      transform: optional per-example function (deterministic, or seeded by its input).
      process_index, process_count: this process's slot among all processes.
      worker_count: Grain worker processes (0: read in this process).
      drop_remainder: drop a last incomplete batch (always true for training).
    """
    check_batch(batch_size, shards=1, process_count=process_count)
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    if transform is not None:
        ds = ds.map(transform)
    if process_count > 1:
        ds = _ProcessRows(ds, batch_size, process_index, process_count)
    local = batch_size // process_count
    ds = ds.batch(local, drop_remainder=drop_remainder, batch_fn=_stack)
    it = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=2 if worker_count == 0 else 1, prefetch_buffer_size=4)
    )
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


def _stack(examples):
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
