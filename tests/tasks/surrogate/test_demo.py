"""`make demo` learns: on held-out trajectories the pretrained AViT beats the same model from
scratch, and scratch beats persistence, by 10% each, one step and over 5 rollout steps.

The demo runs as ``make demo`` runs it, in its own process on the default single CPU device:
the test process simulates 8 devices, whose data-parallel sums round differently, and the
demo's single-seed numbers move with the summation order."""

import json
import os
import re
import subprocess
import sys

import pytest

MARGIN = 0.9  # each arm at most 90% of the error of the next
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


@pytest.mark.slow
def test_demo_preset_beats_scratch_and_persistence_by_a_margin(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    work = tmp_path / "demo"
    cmd = [sys.executable, "-m", "experiments.surrogate_transfer", "demo", "--workdir", str(work)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads((work / "results.json").read_text())
    arms = {r["arm"]: r for r in out["summary"]}
    assert set(arms) == {"pretrained", "scratch", "persistence"}
    for metric in ("nrmse_1", "nrmse_5"):
        pre, scratch, persist = (
            arms[a][metric][0] for a in ("pretrained", "scratch", "persistence")
        )
        assert pre < MARGIN * scratch, (metric, pre, scratch)
        assert scratch < MARGIN * persist, (metric, scratch, persist)
    report = (work / "report.md").read_text()
    assert "This demo pretrains" in report.splitlines()[2]
