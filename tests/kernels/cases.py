"""Seeds and test-case builders shared by the attention kernel tests (pure NumPy, no jax).

Pure NumPy on purpose, like ``numpy_oracle``: the Triton-interpreter tests import it from a venv
without jax.

* :func:`seed_for` derives each test's seed from its pytest node id, so every run of a test sees
  the same inputs and a failure reproduces; the seed goes into every failure message.
  ``JAXFM_TEST_SEED=<int>`` mixes another value in, to try other inputs on purpose.
* :class:`Case` is one attention configuration; :func:`draw_inputs` and :func:`segment_masks`
  build its random inputs and masks for the Pallas and Triton tests alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

SEED_ENV = "JAXFM_TEST_SEED"


def seed_for(test_id: str) -> int:
    """A 32-bit seed from ``test_id`` (e.g. ``request.node.nodeid``) and ``$JAXFM_TEST_SEED``."""
    text = f"{test_id}|{os.environ.get(SEED_ENV, '')}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def rng_for(request) -> tuple[int, np.random.Generator]:
    """``(seed, generator)`` for the running test (``request``: pytest's fixture)."""
    seed = seed_for(request.node.nodeid)
    return seed, np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class Case:
    """One attention configuration: dtype, shapes, causal, masks, and optional tile sizes."""

    dtype: str
    b: int
    lq: int
    lk: int
    h: int
    hkv: int
    d: int
    causal: bool
    masks: str = "none"  # none | segments | padding | both
    blocks: tuple[int, int] | None = None
    """(block_q, block_k) tiles (each test maps them to its kernel's parameters); None: default."""

    def __str__(self):
        tiles = "" if self.blocks is None else f"-m{self.blocks[0]}n{self.blocks[1]}"
        return (
            f"{self.dtype}-b{self.b}-q{self.lq}-k{self.lk}-h{self.h}/{self.hkv}-d{self.d}"
            f"-{'causal' if self.causal else 'full'}-{self.masks}{tiles}"
        )


def draw_inputs(case: Case, rng: np.random.Generator):
    """``q, k, v, do`` as float32 standard normal arrays (round them to ``case.dtype`` after)."""
    q_shape = (case.b, case.lq, case.h, case.d)
    kv_shape = (case.b, case.lk, case.hkv, case.d)
    return tuple(
        rng.standard_normal(shape).astype(np.float32)
        for shape in (q_shape, kv_shape, kv_shape, q_shape)
    )


def segment_masks(case: Case, rng: np.random.Generator):
    """Segment ids (packed sequences) and/or key padding, folded into ``(q_seg, kv_seg)``.

    ``None, None`` for ``masks == "none"``. With padding, the last batch element has *no* valid
    key at all when there are >= 2 batch elements (fully masked rows must give 0, never NaN).
    """
    if case.masks == "none":
        return None, None
    q_seg = np.zeros((case.b, case.lq), np.int32)
    kv_seg = np.zeros((case.b, case.lk), np.int32)
    if case.masks in ("segments", "both"):
        # Sorted random ids in {0, 1, 2}: contiguous packed sequences of random lengths.
        q_seg = np.sort(rng.integers(0, 3, (case.b, case.lq)), axis=1).astype(np.int32)
        kv_seg = (
            q_seg.copy()
            if case.lq == case.lk
            else np.sort(rng.integers(0, 3, (case.b, case.lk)), axis=1).astype(np.int32)
        )
    if case.masks in ("padding", "both"):
        lengths = rng.integers(1, case.lk + 1, case.b)
        if case.b > 1:
            lengths[-1] = 0
        pad = np.arange(case.lk)[None, :] < lengths[:, None]
        kv_seg = np.where(pad, kv_seg, -1).astype(np.int32)
    return q_seg, kv_seg


def fully_masked_batch(case: Case) -> bool:
    """Whether :func:`segment_masks` gave the last batch element no valid key."""
    return case.masks in ("padding", "both") and case.b > 1
