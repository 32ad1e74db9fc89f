"""jaxfm.data.bench: the loader is compared with a measured training step's consumption."""

import json

import pytest

from jaxfm.data import bench


def _step_record(tmp_path):
    path = tmp_path / "bench_surrogate.json"
    rows = [{"preset": "Ti", "batch": 4, "grid": 64, "n_steps_input": 4, "step_s": 0.5}]
    path.write_text(json.dumps({"device": "cpu", "results": rows}))
    return path


def test_consumer_rate_is_the_measured_step_and_the_study_is_written(tmp_path, capsys):
    src = _step_record(tmp_path)
    argv = ["--resolution", "16", "--n-traj", "2", "--systems", "advection"]
    argv += ["--consumer-from", str(src), "--out", str(tmp_path / "d.json")]
    argv += ["--results-dir", str(tmp_path / "study")]
    assert bench.main(argv) == 0
    record = json.loads((tmp_path / "d.json").read_text())
    lo = record["loader"]
    assert lo["consumer_rate"] == 8.0 and lo["consumer"]["preset"] == "Ti"  # 4 / 0.5 s
    slowest = min(v for k, v in lo.items() if k.endswith("_windows_per_s"))
    assert lo["headroom"] == pytest.approx(slowest / 8.0)
    report = (tmp_path / "study" / "report.md").read_text()
    assert f"{lo['headroom']:.1f}x the 8.00 samples/s a Ti AViT training step" in report
    assert "| advection |" in report
    assert (
        (tmp_path / "study" / "command.txt")
        .read_text()
        .startswith("python -m jaxfm.data.bench --resolution 16")
    )


def test_a_missing_preset_is_one_line(tmp_path, capsys):
    src = _step_record(tmp_path)
    with pytest.raises(SystemExit) as e:
        bench.main(["--consumer-from", str(src), "--consumer-preset", "B", "--skip-loader"])
    assert e.value.code == 2
    assert "no preset 'B' (has ['Ti'])" in capsys.readouterr().err
