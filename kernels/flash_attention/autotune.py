"""Autotune the flash-attention block sizes on the current device; write a user tuning table.

On the machine whose device kind you want to fill (e.g. an H100)::

    python -m kernels.flash_attention.autotune --impl pallas triton --head-dims 64 128 256 \\
        --seq-len 4096 --write runs/tuning/tuning_table.json

times every candidate (forward + backward, bf16, causal, tokens = 16k) with the benchmark
timer (``kernels.timing``) and prints the fastest per head dim. ``--write PATH`` merges the
winners into the user table at PATH under the device's kind (``--write`` alone:
``runs/tuning/tuning_table.json``); the shipped ``tuning_table.json`` is never modified. Use the
result with ``JAXFM_TUNING_TABLE=PATH`` (or ``get_block_sizes(..., table=PATH)``). On CPU the
Pallas path runs in interpret mode, so only ``--smoke`` sizes are sensible there (this is how
the command itself is tested).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os

from kernels.flash_attention.tuning import IMPLS, BlockSizes, device_kind, load_table
from kernels.timing import time_attention

DEFAULT_WRITE_PATH = os.path.join("runs", "tuning", "tuning_table.json")


def candidates(head_dim: int) -> list[BlockSizes]:
    """Candidate block sizes for the autotune sweep (smaller tiles for large D: smem)."""
    blocks = (32, 64, 128) if head_dim <= 128 else (32, 64)
    out = []
    for bq, bk, warps, stages in itertools.product(blocks, blocks, (4, 8), (2, 3)):
        out.append(BlockSizes(bq, bk, bk, bq, warps, stages))
    return out


def write_user_table(path: str, kind: str, best: dict) -> None:
    """Merge ``best`` (impl -> "dN" -> entry) into the user table at ``path`` under ``kind``."""
    table = load_table(path) if os.path.exists(path) else {}
    table = json.loads(json.dumps(table))  # a deep copy: the loaded table is cached
    entry = table.setdefault(kind, {})
    for impl, per_d in best.items():
        entry.setdefault(impl, {}).update(per_d)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(table, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def autotune(impls, head_dims, seq_len: int, smoke: bool, write: str | None) -> dict:
    """Time each candidate; return the best per impl and head dim (and write them to ``write``)."""
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
    if write is not None:
        write_user_table(write, kind, best)
        print(f"wrote {kind!r} entries to {write}; use them with JAXFM_TUNING_TABLE={write}")
    return best


def main(argv=None) -> None:
    """CLI: ``python -m kernels.flash_attention.autotune [--impl ...] [--write [PATH]]``."""
    p = argparse.ArgumentParser(
        prog="python -m kernels.flash_attention.autotune", description=__doc__.splitlines()[0]
    )
    p.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--smoke", action="store_true", help="two candidates, tiny sizes (CPU)")
    p.add_argument(
        "--write",
        nargs="?",
        const=DEFAULT_WRITE_PATH,
        default=None,
        metavar="PATH",
        help=f"merge the winners into the user table PATH (default {DEFAULT_WRITE_PATH})",
    )
    args = p.parse_args(argv)
    if args.seq_len < 16 or math.log2(args.seq_len) % 1:
        p.error(f"--seq-len must be a power of two >= 16, got {args.seq_len}")
    autotune(args.impl, args.head_dims, args.seq_len, args.smoke, args.write)


if __name__ == "__main__":
    main()
