"""Generate PDE trajectories into The Well's layout: a CLI and a library entry point.

    python -m jaxfm.data.generate SYSTEM --n-traj N --resolution R --steps T --out DIR

writes ``DIR/SYSTEM/data/{train,valid,test}/SYSTEM.hdf5`` (80/10/10 by trajectory order) and
``DIR/SYSTEM/stats.yaml`` (train-split statistics), see :mod:`jaxfm.data.well`. Trajectories are
simulated in chunks (``--chunk``, vmapped together) with a progress line and ETA per chunk;
chunk ``c`` uses the seed ``SeedSequence([seed, c])``, so a run is reproducible from ``--seed``.
Files are written atomically; an existing complete dataset is kept unless ``--overwrite``.

:func:`generate_corpus` builds the small multi-system corpus of the demo.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxfm.data.sim.registry import SIMULATORS, SYSTEMS, configured, get_simulator
from jaxfm.data.sim.system import corpus_systems
from jaxfm.data.trajectories import TrajectorySet, concat
from jaxfm.data.well import SPLITS, write_dataset
from jaxfm.signals import Terminated, exit_on_sigterm, stage

CORPUS_SYSTEMS = corpus_systems(SYSTEMS)
"""Systems of the default corpus: every 2-D system, in declaration order (the held-out transfer
targets, the two compressible ones, last); see :func:`jaxfm.data.sim.system.corpus_systems`."""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dataset_paths(out: str | Path, system: str) -> dict[str, Path]:
    """Where :func:`generate_system` writes ``system`` under ``out``."""
    root = Path(out) / system
    paths = {s: root / "data" / s / f"{system}.hdf5" for s in SPLITS}
    paths["stats"] = root / "stats.yaml"
    return paths


def simulate_chunked(
    system: str,
    n_traj: int,
    seed: int = 0,
    chunk: int = 16,
    progress: bool = True,
    **overrides,
) -> TrajectorySet:
    """Simulate ``n_traj`` trajectories of ``system`` in chunks, printing progress and ETA.

    Args:
        system: a key of :data:`jaxfm.data.sim.registry.SIMULATORS`.
        n_traj: number of trajectories.
        seed: run seed (chunk ``c`` uses ``SeedSequence([seed, c])``).
        chunk: trajectories simulated together (one ``vmap``).
        progress: print a line per chunk to stderr.
        **overrides: config fields (``resolution``, ``n_steps``, ...).
    """
    sim = get_simulator(system)
    config = configured(system, **overrides)
    parts, done, t0 = [], 0, time.perf_counter()
    width = min(chunk, n_traj)
    for c, start in enumerate(range(0, n_traj, width)):
        size = min(width, n_traj - start)
        chunk_seed = int(np.random.SeedSequence([seed, c]).generate_state(1)[0])
        # Every chunk runs `width` trajectories (the last one keeps the first `size`): one
        # batch shape, hence one compilation per system.
        parts.append(sim.simulate(config, width, chunk_seed).subset(slice(0, size)))
        done += size
        if progress:
            el = time.perf_counter() - t0
            eta = el / done * (n_traj - done)
            _log(f"[{system}] {done}/{n_traj} trajectories, {el:.1f} s elapsed, ETA {eta:.1f} s")
    ts = concat(parts)
    ts.check_finite(f"{system} simulation")
    return ts


def generate_system(
    system: str,
    out: str | Path,
    n_traj: int,
    resolution: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    chunk: int = 16,
    overwrite: bool = False,
    progress: bool = True,
    **overrides,
) -> dict[str, Path]:
    """Simulate ``system`` and write its train/valid/test files and statistics under ``out``.

    Returns:
        Paths ``{"train", "valid", "test", "stats"}``.
    """
    paths = dataset_paths(out, system)
    if not overwrite and all(p.is_file() for p in paths.values()):
        if progress:
            _log(f"[{system}] complete dataset found in {paths['stats'].parent}, kept")
        return paths
    if resolution is not None:
        overrides["resolution"] = resolution
    if steps is not None:
        overrides["n_steps"] = steps
    ts = simulate_chunked(system, n_traj, seed, chunk, progress, **overrides)
    settings = {
        "system": system,
        "n_traj": n_traj,
        "seed": seed,
        "chunk": chunk,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
    }
    return write_dataset(ts, out, settings)


def generate_corpus(
    out_dir: str | Path,
    systems: Sequence[str] = CORPUS_SYSTEMS,
    n_traj: int = 16,
    resolution: int = 32,
    steps: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, Path]]:
    """Generate the multi-system corpus (one dataset per system) under ``out_dir``.

    Args:
        out_dir: root folder.
        systems: system names.
        n_traj: trajectories per system (split 80/10/10).
        resolution: grid size per side.
        steps: stored frames per trajectory (default: each system's own).
        seed: base seed; system ``i`` uses ``seed + i``.
        overwrite: regenerate datasets that are already complete.
        progress: print progress lines.

    Returns:
        ``{system: {"train", "valid", "test", "stats": path}}``.
    """
    out = {}
    t0 = time.perf_counter()
    for i, system in enumerate(systems):
        out[system] = generate_system(
            system,
            out_dir,
            n_traj,
            resolution,
            steps,
            seed + i,
            overwrite=overwrite,
            progress=progress,
        )
    if progress:
        _log(f"corpus of {len(systems)} systems in {out_dir}: {time.perf_counter() - t0:.1f} s")
    return out


def _parse_param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    systems = "\n".join(f"  {k:<20} {v.description}" for k, v in SIMULATORS.items())
    p = argparse.ArgumentParser(
        prog="python -m jaxfm.data.generate",
        description="Simulate a PDE system and write train/valid/test files in The Well's "
        "HDF5 layout plus per-field statistics (stats.yaml).",
        epilog=f"systems:\n{systems}\n\nexample:\n  python -m jaxfm.data.generate shallow_water "
        "--n-traj 32 --resolution 64 --steps 33 --out data/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "system",
        help="system to simulate (listed below), or 'corpus' for the default multi-system corpus",
    )
    p.add_argument("--n-traj", type=int, default=16, help="trajectories (split 80/10/10)")
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="grid cells per side (default: the system's own, 64 in 2-D)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="stored frames per trajectory, initial frame included (default: the system's own)",
    )
    p.add_argument("--out", required=True, help="output root; files go to OUT/SYSTEM/...")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--chunk", type=int, default=16, help="trajectories simulated at once")
    p.add_argument(
        "--param",
        action="append",
        type=_parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="other config field, e.g. --param frame_dt=0.1 (repeatable)",
    )
    p.add_argument("--overwrite", action="store_true", help="regenerate a complete dataset")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 2 with one line for bad input, 143 with one line on SIGTERM."""
    args = build_parser().parse_args(argv)
    try:
        with exit_on_sigterm(), stage("while generating data", "finished files are complete"):
            return _generate(args)
    except Terminated as e:
        print(e.message, file=sys.stderr, flush=True)
        return e.code
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _generate(args) -> int:
    if args.system == "corpus":
        generate_corpus(
            args.out,
            n_traj=args.n_traj,
            resolution=args.resolution or 32,
            steps=args.steps,
            seed=args.seed,
            overwrite=args.overwrite,
        )
        return 0
    paths = generate_system(
        args.system,
        args.out,
        args.n_traj,
        args.resolution,
        args.steps,
        args.seed,
        args.chunk,
        args.overwrite,
        **dict(args.param),
    )
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
