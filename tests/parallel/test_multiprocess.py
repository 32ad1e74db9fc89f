"""Two jax processes on localhost (CPU, 4 devices each) train like one process with 8
devices, and their checkpoint restores in a single process (N -> M)."""

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "experiments", "quickstart.py")
ARGS = [
    "smoke",
    "--train.steps",
    "6",
    "--train.log_every",
    "1",
    "--train.eval_every",
    "0",
    "--ckpt.every",
    "3",
    "--train.progress",
    "false",
]


def _env(devices, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COORDINATOR")}
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu", **extra
    )
    return env


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["loss"] for r in map(json.loads, f) if "loss" in r]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiprocess
def test_two_processes_match_one_process_and_restore_on_one(tmp_path):
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, QUICKSTART, *ARGS, "--workdir", str(single)],
        check=True,
        env=_env(8),
        timeout=300,
        capture_output=True,
    )

    multi = tmp_path / "multi"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                "timeout",
                "-k",
                "10",
                "240",
                sys.executable,
                QUICKSTART,
                *ARGS,
                "--workdir",
                str(multi),
            ],
            env=_env(
                4,
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    assert "mesh {'data': 8" in outs[0]
    # Same global batches, same math; the cross-process all-reduce may sum in another order.
    assert _losses(multi) == pytest.approx(_losses(single), rel=1e-5)

    # N=2 -> M=1: resume the two-process run in one process (8 devices).
    out = subprocess.run(
        [
            sys.executable,
            QUICKSTART,
            *ARGS[:-6],
            "--train.steps",
            "9",
            "--train.progress",
            "false",
            "--ckpt.every",
            "3",
            "--train.log_every",
            "1",
            "--train.eval_every",
            "0",
            "--workdir",
            str(multi),
        ],
        env=_env(8),
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resumed from step 6" in out.stdout
    assert json.load(open(multi / "results.json"))["step"] == 9
