"""Benchmarks of the physics data path (printed and written as JSON; never timed tests).

    python -m jaxfm.data.bench [--resolution 64] [--n-traj 8] [--out runs/bench/data.json]

* Simulator throughput per system: trajectory-frames/s and solver steps/s (frames x substeps)
  for ``n_traj`` trajectories vmapped together, after a warm-up run that compiles (the compile
  + first-run time is reported separately).
* Loader throughput: windows/s through the Grain pipeline (:func:`jaxfm.data.pipeline.
  make_dataset`, shuffled, batched) from a Well-layout file read lazily with normalisation, from
  memory, and for a three-system mixture; compared with ``--consumer-rate``, the samples/s the
  training step consumes (default 15.4 = batch 8 every 0.52 s, an assumed rate for a small
  D64/depth-4 AViT step at 64² on a 2-core CPU; pass your model's rate). The loader must not be
  the bottleneck.

The JSON holds the device, Python/jax/numpy/h5py/grain versions, the git SHA and the settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def environment() -> dict:
    """Device, versions and git SHA for the benchmark record."""
    import grain  # noqa: F401
    import h5py
    import jax

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    from importlib.metadata import version

    return {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "grain": version("grain"),
        "git_sha": sha,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def bench_simulator(name: str, resolution: int, n_traj: int, n_steps: int | None = None) -> dict:
    """Time one system: a compiling warm-up run, then a timed run with another seed."""
    from jaxfm.data.sim.registry import get_simulator

    sim = get_simulator(name)
    overrides = {"resolution": resolution}
    if n_steps is not None:
        overrides["n_steps"] = n_steps
    config = dataclasses.replace(sim.config, **overrides)
    t0 = time.perf_counter()
    sim.simulate(config, n_traj, 0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts = sim.simulate(config, n_traj, 1)
    run = time.perf_counter() - t0
    frames = n_traj * (ts.n_steps - 1)
    sub = ts.constants["substeps"]
    return {
        "system": name,
        "resolution": resolution,
        "n_traj": n_traj,
        "frames": ts.n_steps,
        "substeps_per_frame": sub,
        "first_run_s": first,
        "run_s": run,
        "traj_frames_per_s": frames / run,
        "traj_solver_steps_per_s": frames * sub / run,
        "s_per_traj": run / n_traj,
    }


def _rate(it, n_batches: int, batch: int) -> float:
    next(it)  # first batch: opens files, starts threads
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch / (time.perf_counter() - t0)


def bench_loader(resolution: int, batch: int = 8, n_batches: int = 50) -> dict:
    """Windows/s from a lazy Well file, from memory, and for a 3-system mixture."""
    from jaxfm.data.mixture import mixture_dataset
    from jaxfm.data.normalize import FieldStats
    from jaxfm.data.pipeline import make_dataset
    from jaxfm.data.trajectories import TrajectorySet
    from jaxfm.data.well import WellFile, write_well
    from jaxfm.data.windows import WindowSource

    rng = np.random.default_rng(0)

    def synthetic(system, fields, n_traj=16, n_steps=33):
        x = np.linspace(0, 1, resolution, endpoint=False)
        data = rng.normal(size=(n_traj, n_steps, resolution, resolution, len(fields)))
        return TrajectorySet(
            system=system,
            data=data,
            field_names=fields,
            dt=0.1,
            coords=(x, x),
            bc=("periodic", "periodic"),
        )

    sets = [
        synthetic("navier_stokes", ("velocity_x", "velocity_y", "tracer")),
        synthetic("shallow_water", ("h", "velocity_x", "velocity_y")),
        synthetic("diffusion_reaction", ("activator", "inhibitor")),
    ]
    out = {"batch": batch, "n_batches": n_batches, "resolution": resolution, "n_steps_input": 4}
    with tempfile.TemporaryDirectory() as tmp:
        files = [WellFile(write_well(ts, Path(tmp) / f"{ts.system}.hdf5")) for ts in sets]
        stats = [FieldStats.from_trajectories(ts) for ts in sets]
        lazy = WindowSource(files[0], 4, 1, stats=stats[0])
        out["lazy_h5_windows_per_s"] = _rate(
            iter(make_dataset(lazy, batch_size=batch, seed=0)), n_batches, batch
        )
        mem = WindowSource(sets[0], 4, 1, stats=stats[0])
        out["memory_windows_per_s"] = _rate(
            iter(make_dataset(mem, batch_size=batch, seed=0)), n_batches, batch
        )
        srcs = [WindowSource(f, 4, 1, stats=s) for f, s in zip(files, stats)]
        out["mixture_lazy_windows_per_s"] = _rate(
            iter(mixture_dataset(srcs, batch_size=batch, seed=0)), n_batches, batch
        )
        for f in files:
            f.close()
    return out


def main(argv=None) -> int:
    """CLI entry point."""
    from jaxfm.data.sim.registry import SIMULATORS

    p = argparse.ArgumentParser(
        prog="python -m jaxfm.data.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--resolution", type=int, default=64, help="grid cells per side (2-D)")
    p.add_argument("--n-traj", type=int, default=8, help="trajectories vmapped together")
    p.add_argument(
        "--n-steps",
        type=int,
        default=None,
        help="frames per trajectory (default: each system's own)",
    )
    p.add_argument("--systems", nargs="*", default=list(SIMULATORS), help="systems to time")
    p.add_argument("--skip-loader", action="store_true", help="only the simulators")
    p.add_argument(
        "--consumer-rate",
        type=float,
        default=15.4,
        help="samples/s the smoke surrogate consumes (see module docstring)",
    )
    p.add_argument("--out", default="runs/bench/data.json", help="JSON output file")
    args = p.parse_args(argv)
    record = {"env": environment(), "settings": vars(args), "simulators": [], "loader": None}
    for name in args.systems:
        r = bench_simulator(name, args.resolution, args.n_traj, args.n_steps)
        record["simulators"].append(r)
        print(
            f"{name:<20} {r['traj_frames_per_s']:9.1f} traj-frames/s "
            f"{r['traj_solver_steps_per_s']:11.1f} solver-steps/s "
            f"{r['s_per_traj']:7.3f} s/traj  (first run incl. compile {r['first_run_s']:.1f} s)",
            flush=True,
        )
    if not args.skip_loader:
        lo = bench_loader(args.resolution)
        lo["consumer_rate"] = args.consumer_rate
        lo["headroom"] = min(lo[k] for k in lo if k.endswith("_per_s")) / args.consumer_rate
        record["loader"] = lo
        print(
            f"loader: lazy h5 {lo['lazy_h5_windows_per_s']:.0f}/s, memory "
            f"{lo['memory_windows_per_s']:.0f}/s, mixture {lo['mixture_lazy_windows_per_s']:.0f}"
            f"/s windows; {lo['headroom']:.1f}x the consumer's {args.consumer_rate}/s"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
