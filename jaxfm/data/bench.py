"""Benchmarks of the physics data path (printed and written as JSON; never timed tests).

    python -m jaxfm.data.bench [--resolution 64] [--n-traj 8] [--out runs/bench/data.json]

* Simulator throughput per system: trajectory-frames/s and solver steps/s (frames x substeps)
  for ``n_traj`` trajectories vmapped together, after a warm-up run that compiles (the compile
  + first-run time is reported separately).
* Loader throughput: windows/s through the Grain pipeline (:func:`jaxfm.data.pipeline.
  make_dataset`, shuffled, batched) from a Well-layout file read lazily with normalisation, from
  memory, and for a three-system mixture; compared with ``--consumer-rate``, the samples/s the
  training step consumes: measured, with ``--consumer-from``, from a surrogate step benchmark's
  results.json (``experiments.bench_surrogate``: samples/s = batch / median step time of
  ``--consumer-preset``, e.g. Ti), else ``--consumer-rate`` (default 15.4 = batch 8 every
  0.52 s, an assumed rate for a small D64/depth-4 AViT step at 64² on a 2-core CPU). The
  loader must not be the bottleneck: the slowest loader's headroom over the consumer should
  be well above 10x.
* ``--results-dir DIR`` also writes a study folder (command.txt, config.json, results.json,
  report.md with both tables).

The JSON holds the device, Python/jax/numpy/h5py/grain versions, the git SHA and the settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
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


def consumer_from(path: str, preset: str) -> dict:
    """Samples/s a training step of ``preset`` consumes, from a results.json of
    ``experiments.bench_surrogate`` (its batch over its median step time)."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--consumer-from {path}: cannot read a benchmark record ({e})") from None
    rows = [r for r in record.get("results", []) if r.get("preset") == preset]
    if not rows:
        have = sorted({r.get("preset") for r in record.get("results", [])})
        raise ValueError(f"--consumer-from {path}: no preset {preset!r} (has {have})")
    r = rows[0]
    return {
        "source": path,
        "preset": preset,
        "batch": r["batch"],
        "grid": r["grid"],
        "n_steps_input": r["n_steps_input"],
        "dtype": r.get("dtype"),
        "step_s": r["step_s"],
        "samples_per_s": r["batch"] / r["step_s"],
        "device": record.get("device"),
        "git_sha": record.get("git_sha"),
    }


def report(record: dict, command: str) -> str:
    """report.md of one run: simulator table, loader line, the consumer it is compared with."""
    env, st = record["env"], record["settings"]
    lines = [
        "# Physics data path benchmark (`jaxfm.data.bench`)",
        "",
        f"    {command}",
        "",
        f"{env['device']} ({env['cpu']}, {os.cpu_count()} cores), Python {env['python']}, jax "
        f"{env['jax']}, numpy {env['numpy']}, h5py {env['h5py']}, grain {env['grain']}, git "
        f"{env['git_sha']}, {env['time']}. Every number below is in results.json.",
        "",
        f"Simulators: {st['n_traj']} trajectories vmapped together at {st['resolution']}² "
        "(1-D systems: that many cells), each system's default frames; a compiling warm-up "
        "run, then a timed run with another seed (s/traj excludes compilation).",
        "",
        "| system | frames x substeps | s/traj | traj-frames/s | solver steps/s | first run incl. "
        "compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["simulators"]:
        lines.append(
            f"| {r['system']} | {r['frames']} x {r['substeps_per_frame']} | {r['s_per_traj']:.4f}"
            f" | {r['traj_frames_per_s']:.1f} | {r['traj_solver_steps_per_s']:.0f} | "
            f"{r['first_run_s']:.1f} |"
        )
    lo = record.get("loader")
    if lo:
        c = lo.get("consumer")
        who = (
            f"a {c['preset']} AViT training step consumes ({c['batch']} samples of "
            f"{c['n_steps_input']} x {c['grid']}² every {c['step_s']:.3f} s, {c['dtype']}, "
            f"measured by `experiments.bench_surrogate` on {c['device']}, {c['source']})"
            if c
            else "`--consumer-rate`"
        )
        lines += [
            "",
            f"Loader (batch {lo['batch']}, {lo['n_steps_input']} input frames, "
            f"{lo['resolution']}², {lo['n_batches']} batches through `make_dataset`, one "
            f"process): lazy HDF5 with normalisation {lo['lazy_h5_windows_per_s']:.0f} "
            f"windows/s, in memory {lo['memory_windows_per_s']:.0f} windows/s, 3-system "
            f"mixture from HDF5 {lo['mixture_lazy_windows_per_s']:.0f} windows/s; the slowest "
            f"is {lo['headroom']:.1f}x the {lo['consumer_rate']:.2f} samples/s {who}.",
        ]
    return "\n".join(lines) + "\n"


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
    p.add_argument(
        "--consumer-from",
        default="",
        help="results.json of experiments.bench_surrogate: take the consumer rate from its "
        "measured step (default: none, use --consumer-rate)",
    )
    p.add_argument(
        "--consumer-preset", default="Ti", help="preset in --consumer-from (default: Ti)"
    )
    p.add_argument("--out", default="runs/bench/data.json", help="JSON output file")
    p.add_argument(
        "--results-dir",
        default="",
        help="also write a study folder here: command.txt, config.json, results.json, "
        "report.md (default: none)",
    )
    args = p.parse_args(argv)
    consumer = None
    if args.consumer_from:
        try:
            consumer = consumer_from(args.consumer_from, args.consumer_preset)
        except ValueError as e:
            p.error(str(e))
        args.consumer_rate = consumer["samples_per_s"]
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
        lo["consumer"] = consumer
        lo["headroom"] = min(lo[k] for k in lo if k.endswith("_per_s")) / args.consumer_rate
        record["loader"] = lo
        print(
            f"loader: lazy h5 {lo['lazy_h5_windows_per_s']:.0f}/s, memory "
            f"{lo['memory_windows_per_s']:.0f}/s, mixture {lo['mixture_lazy_windows_per_s']:.0f}"
            f"/s windows; {lo['headroom']:.1f}x the consumer's {args.consumer_rate:.2f}/s"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
    if args.results_dir:
        from jaxfm.provenance import command_line, write_study

        if argv is None:
            command = command_line()
        else:
            command = shlex.join(["python", "-m", "jaxfm.data.bench", *argv])
        write_study(
            args.results_dir,
            command=command,
            config=vars(args),
            results=record,
            report=report(record, command),
        )
        print(f"wrote {args.results_dir}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
