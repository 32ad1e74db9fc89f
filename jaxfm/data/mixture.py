"""Multi-system sampling: one system per micro-batch, deterministic and resumable.

MPP (McCabe et al. 2023, ``MultisetSampler``) draws one sub-dataset per micro-batch, so a
micro-batch has one set of fields, and accumulates gradients over several micro-batches, so one
optimiser step mixes systems. :class:`MixtureWindows` is a random-access source of single
windows laid out so that consecutive blocks of ``micro_batch`` examples form micro-batches:

* example ``i`` belongs to micro-batch ``m = i // micro_batch``, row ``r = i % micro_batch``;
* micro-batch ``m`` uses system ``s_m ~ weights`` (uniform by default), drawn from
  ``default_rng([seed, m])``, and window indices drawn uniformly (with replacement) from that
  system's source with ``default_rng([seed, m, 1])``.

Everything is a pure function of ``(seed, i)``: no hidden RNG state. Fed *unshuffled* to the
team pipeline (:func:`jaxfm.data.pipeline.make_dataset` with ``shuffle=False``, which is what
:func:`mixture_dataset` does), global batch ``s`` of size ``B = micro_batch · grad_accum`` holds
micro-batches ``s·k .. s·k + k - 1`` in order, each on one system, which is exactly how the
train step splits a batch for accumulation (``reshape(k, B/k, ...)``); each process takes its
contiguous rows of the global batch, and resuming the Grain iterator replays the same stream.

Systems differ in channels (and maybe grid), but a global batch is one array. With
``grad_accum = 1`` that is fine (a batch is one system). To accumulate across systems, pass
``pad_fields=K``: every example is zero-padded to ``K`` channels, ``field_ids`` padded with
``-1``, and ``field_mask (K,)`` marks the real channels (all sources must then share a grid).

Example dict (see :mod:`jaxfm.data.windows`): ``x (n_steps_input, *spatial, C)``,
``y (n_steps_output, *spatial, C)``, ``field_ids (C,)``, ``system ()``, ``traj ()``,
``start ()`` [+ ``field_mask (C,)`` when padded, with ``C = pad_fields``].
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import numpy as np

from jaxfm.data.pipeline import make_dataset


class MixtureWindows:
    """Random-access windows grouped into single-system micro-batches (see module docstring).

    Args:
        sources: one random-access window source per system.
        micro_batch: examples per micro-batch (global, over all processes).
        seed: stream seed.
        weights: relative system weights (default uniform).
        length: micro-batches per epoch (MPP uses 2000); ``len(self) = length · micro_batch``.
        pad_fields: pad every example to this many channels (see module docstring).
    """

    def __init__(
        self,
        sources: Sequence,
        micro_batch: int,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        length: int = 2000,
        pad_fields: int | None = None,
    ):
        if not sources:
            raise ValueError("MixtureWindows needs at least one source")
        if any(len(s) == 0 for s in sources):
            raise ValueError(f"empty source among {[repr(s) for s in sources]}")
        if micro_batch < 1 or length < 1:
            raise ValueError(f"micro_batch ({micro_batch}) and length ({length}) must be >= 1")
        w = np.ones(len(sources)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(sources),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"weights {weights} must be {len(sources)} non-negative numbers, not all zero"
            )
        if pad_fields is not None:
            widest = max(len(s.field_names) for s in sources)
            if pad_fields < widest:
                raise ValueError(f"pad_fields={pad_fields} but a source has {widest} fields")
            grids = {s[0]["x"].shape[1:-1] for s in sources}
            if len(grids) > 1:
                raise ValueError(f"pad_fields needs one grid for all sources, got {sorted(grids)}")
        self.sources = list(sources)
        self.p = w / w.sum()
        self.micro_batch, self.seed, self.length = micro_batch, seed, length
        self.pad_fields = pad_fields

    def __len__(self) -> int:
        return self.length * self.micro_batch

    def __repr__(self) -> str:
        return (
            f"MixtureWindows(sources={[repr(s) for s in self.sources]}, "
            f"micro_batch={self.micro_batch}, seed={self.seed}, p={self.p.round(6).tolist()}, "
            f"length={self.length}, pad_fields={self.pad_fields})"
        )

    def system_of(self, m: int) -> int:
        """Index (into ``sources``) of the system of micro-batch ``m``."""
        return int(np.random.default_rng([self.seed, m]).choice(len(self.sources), p=self.p))

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range [0, {len(self)}) for {self!r}")
        m, r = divmod(index, self.micro_batch)
        src = self.sources[self.system_of(m)]
        rows = np.random.default_rng([self.seed, m, 1]).integers(len(src), size=self.micro_batch)
        el = dict(src[int(rows[r])])
        if self.pad_fields is not None:
            c, k = el["x"].shape[-1], self.pad_fields
            pad = [(0, 0)] * (el["x"].ndim - 1) + [(0, k - c)]
            el["x"] = np.pad(el["x"], pad)
            el["y"] = np.pad(el["y"], pad)
            el["field_ids"] = np.pad(el["field_ids"], (0, k - c), constant_values=-1)
            el["field_mask"] = np.arange(k) < c
        return el


def mixture_dataset(
    sources: Sequence,
    batch_size: int,
    seed: int = 0,
    weights=None,
    grad_accum: int = 1,
    length: int = 2000,
    pad_fields: int | None = None,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    worker_count: int = 0,
) -> grain.IterDataset:
    """Per-process batched mixture stream through the shared input pipeline (unshuffled, see above).

    Args:
        sources: one window source per system.
        batch_size: GLOBAL batch size per optimiser step (``grad_accum`` micro-batches).
        seed: stream seed.
        weights: relative system weights (default uniform).
        grad_accum: micro-batches per optimiser step.
        length: micro-batches per epoch.
        pad_fields: channel padding, required when ``grad_accum > 1`` and sources differ in
            their number of fields.
        num_epochs: passes (None: forever; epochs repeat the same stream).
        process_index, process_count, worker_count: as in ``make_dataset``.

    Returns:
        The ``grain.IterDataset`` of this process's batches; ``get_state``/``set_state``
        resume it.
    """
    if batch_size % grad_accum:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by grad_accum {grad_accum} "
            f"({batch_size / grad_accum:g} per micro-batch)"
        )
    if grad_accum > 1 and pad_fields is None and len({len(s.field_names) for s in sources}) > 1:
        raise ValueError(
            "grad_accum > 1 mixes systems with different numbers of fields in one "
            "batch: pass pad_fields (e.g. the largest field count)"
        )
    src = MixtureWindows(sources, batch_size // grad_accum, seed, weights, length, pad_fields)
    return make_dataset(
        src,
        batch_size=batch_size,
        seed=seed,
        shuffle=False,
        num_epochs=num_epochs,
        process_index=process_index,
        process_count=process_count,
        worker_count=worker_count,
    )
