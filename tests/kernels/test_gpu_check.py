"""kernels.gpu_check: parts run in order under their limits; a failed or timed-out part is
recorded and the next one still runs; summary.json and RESULTS.md are rewritten after each.
(The whole dry run at CPU sizes is ``make gpu-check-dry``, run by CI.)"""

import json
import sys

import pytest

from kernels import gpu_check


def test_parts_fail_or_time_out_alone_and_results_are_written_as_they_go(tmp_path, monkeypatch):
    py = sys.executable
    fake = [
        gpu_check.Part(
            "env", (py, "-c", gpu_check.ENV_SNIPPET), (py, "-c", gpu_check.ENV_SNIPPET), 60
        ),
        gpu_check.Part(
            "broken", (py, "-c", "raise SystemExit(3)"), (py, "-c", "raise SystemExit(3)"), 60
        ),
        gpu_check.Part(
            "slow",
            (py, "-c", "import time; time.sleep(30)"),
            (py, "-c", "import time; time.sleep(30)"),
            0,  # times out at once (the dry-run limit is 4x this)
        ),
        gpu_check.Part("last", (py, "-c", "print('done')"), (py, "-c", "print('done')"), 60),
    ]
    monkeypatch.setattr(gpu_check, "parts", lambda out, py=py: fake)
    monkeypatch.setattr(sys, "argv", ["x"])
    rc = gpu_check.main(["--out", str(tmp_path), "--dry-run"])
    assert rc == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    got = {p["name"]: (p["rc"], p["timed_out"]) for p in summary["parts"]}
    assert got == {"env": (0, False), "broken": (3, False), "slow": (124, True), "last": (0, False)}
    assert summary["dry_run"] and summary["env"]["backend"] == "cpu"
    assert "grain" in summary["env"]
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| broken | rc 3 |" in table and "| slow | timed out |" in table
    assert "| last | ok |" in table
    assert (tmp_path / "last.log").read_text().strip() == "done"


def test_only_and_unknown_parts(tmp_path):
    summary = gpu_check.run(str(tmp_path), dry_run=True, only=("env",))
    assert [p["name"] for p in summary["parts"]] == ["env"] and summary["parts"][0]["rc"] == 0
    with pytest.raises(SystemExit, match="unknown part"):
        gpu_check.run(str(tmp_path), dry_run=True, only=("envv",))


def test_every_gpu_part_fits_the_device_budget():
    """About 8 minutes of the GPU machine in all, with the start-up outside it."""
    assert sum(p.timeout_s for p in gpu_check.parts("x")) <= 8 * 60
    assert [p.name for p in gpu_check.parts("x")] == [
        "env",
        "numerics",
        "kernel_bench",
        "avit_step",
        "mixers",
    ]
