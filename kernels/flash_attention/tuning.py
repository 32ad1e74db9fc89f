"""Block sizes per device kind for the flash-attention kernels, and the autotune command.

The table lives in ``tuning_table.json`` beside this file, keyed
``device_kind -> impl -> "d{head_dim}"`` (``impl`` in ``pallas``, ``triton``); each entry is a
:class:`BlockSizes`. A missing device kind or head dim falls back to ``"default"`` entries,
which are conservative sizes that compile on any NVIDIA GPU with >= 100 KB shared memory
(64 x 64 tiles, FA2's usual choice for D <= 128) and keep interpret mode on CPU affordable.

Autotune (on the machine whose kind you want to fill, e.g. an H100)::

    python -m kernels.flash_attention.tuning --impl pallas triton --head-dims 64 128 256 \\
        --seq-len 4096 --write

times every candidate (forward + backward, bf16, causal and not, tokens = 16k) with the
benchmark timer and writes the fastest per head dim into the table under the device's kind.
Without ``--write`` it only prints. On CPU the Pallas path runs in interpret mode, so only
``--smoke`` sizes are sensible there (this is how the command itself is tested).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import os

import jax

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tuning_table.json")
IMPLS = ("pallas", "triton")


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes and launch parameters of one flash-attention kernel family."""

    block_q: int = 64
    """Query rows per program in the forward and in the dq kernel."""
    block_k: int = 64
    """Key rows per inner-loop step in the forward and in the dq kernel."""
    block_q_bwd: int = 64
    """Query rows per inner-loop step in the dk/dv kernel."""
    block_k_bwd: int = 64
    """Key rows per program in the dk/dv kernel."""
    num_warps: int = 4
    """Warps per program (GPU only; ignored in interpret mode)."""
    num_stages: int = 2
    """Software-pipelining stages of the inner loop (GPU only)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BlockSizes.{f.name} must be a positive int, got {value!r}")
        for name in ("block_q", "block_k", "block_q_bwd", "block_k_bwd"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                # Triton's tl.dot needs power-of-two tiles of at least 16.
                raise ValueError(f"BlockSizes.{name} must be a power of two >= 16, got {value}")


@functools.lru_cache(maxsize=4)
def _load_table(path: str) -> dict:
    with open(path) as f:
        table = json.load(f)
    if not isinstance(table, dict) or "default" not in table:
        raise ValueError(f"{path}: expected a JSON object with a 'default' device entry")
    return table


def device_kind() -> str:
    """The ``device_kind`` of the first device of the default backend (e.g. 'NVIDIA H100')."""
    return jax.devices()[0].device_kind


def get_block_sizes(impl: str, head_dim: int, kind: str | None = None) -> BlockSizes:
    """Look up tuned block sizes for ``impl`` at ``head_dim`` on a device kind.

    Args:
      impl: ``"pallas"`` or ``"triton"``.
      head_dim: head dimension D (the key is ``"d{D}"``; unknown D uses ``"default"``).
      kind: device kind; defaults to the current default device's kind.

    Returns:
      The table entry, falling back to the ``"default"`` device kind and head dim.
    """
    if impl not in IMPLS:
        raise ValueError(f"tuning: unknown impl {impl!r}; choose one of {IMPLS}")
    table = _load_table(TABLE_PATH)
    kind = device_kind() if kind is None else kind
    for dev in (kind, "default"):
        per_impl = table.get(dev, {}).get(impl, {})
        for key in (f"d{head_dim}", "default"):
            if key in per_impl:
                try:
                    return BlockSizes(**per_impl[key])
                except TypeError as e:
                    raise ValueError(f"{TABLE_PATH}: bad entry {dev}/{impl}/{key}: {e}") from e
    return BlockSizes()


def candidates(head_dim: int) -> list[BlockSizes]:
    """Candidate block sizes for the autotune sweep (smaller tiles for large D: smem)."""
    blocks = (32, 64, 128) if head_dim <= 128 else (32, 64)
    out = []
    for bq, bk, warps, stages in itertools.product(blocks, blocks, (4, 8), (2, 3)):
        out.append(BlockSizes(bq, bk, bk, bq, warps, stages))
    return out


def autotune(impls, head_dims, seq_len: int, smoke: bool, write: bool) -> dict:
    """Time each candidate and return (and optionally write) the best per impl and head dim."""
    # Imported here: the benchmark harness imports this module for the table.
    from kernels.bench import time_attention

    kind = device_kind()
    best: dict[str, dict[str, dict]] = {}
    for impl, d in itertools.product(impls, head_dims):
        cands = candidates(d)[:2] if smoke else candidates(d)
        tokens = 256 if smoke else 16384
        batch = max(1, tokens // seq_len)
        heads = max(1, 2048 // d) if not smoke else 2
        results = []
        for bs in cands:
            try:
                ms = time_attention(
                    impl,
                    batch,
                    seq_len,
                    heads,
                    d,
                    causal=True,
                    backward=True,
                    dtype="bfloat16",
                    block_sizes=bs,
                    repeats=2 if smoke else 10,
                )
            except Exception as e:  # a candidate that does not compile (smem) is skipped
                print(f"{impl} d{d} {bs}: failed ({type(e).__name__}: {str(e)[:80]})")
                continue
            print(f"{impl} d{d} {bs}: {ms:.3f} ms")
            results.append((ms, bs))
        if results:
            ms, bs = min(results, key=lambda r: r[0])
            best.setdefault(impl, {})[f"d{d}"] = dataclasses.asdict(bs)
            print(f"best {impl} d{d}: {bs} ({ms:.3f} ms)")
    if write:
        table = json.loads(json.dumps(_load_table(TABLE_PATH)))  # a deep copy
        entry = table.setdefault(kind, {})
        for impl, per_d in best.items():
            entry.setdefault(impl, {}).update(per_d)
        with open(TABLE_PATH, "w") as f:
            json.dump(table, f, indent=2, sort_keys=True)
            f.write("\n")
        _load_table.cache_clear()
        print(f"wrote {kind!r} entries to {TABLE_PATH}")
    return best


def main(argv=None) -> None:
    """CLI: ``python -m kernels.flash_attention.tuning [--impl ...] [--write]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--smoke", action="store_true", help="two candidates, tiny sizes (CPU)")
    p.add_argument("--write", action="store_true", help="store the winners in the table")
    args = p.parse_args(argv)
    if args.seq_len < 16 or math.log2(args.seq_len) % 1:
        p.error(f"--seq-len must be a power of two >= 16, got {args.seq_len}")
    autotune(args.impl, args.head_dims, args.seq_len, args.smoke, args.write)


if __name__ == "__main__":
    main()
