"""experiments.bench_surrogate: the benchmark writes bench.json and its study folder (the
real smoke measurement compiles an AViT step, tens of seconds on 2 cores: slow)."""

import json

import pytest

from experiments import bench_surrogate as bs
from jaxfm.config import override
from tests.study_check import assert_study


def test_study_folder_holds_the_table(tmp_path, monkeypatch):
    def fake(name, dtype, opts):
        return dict(
            preset=name,
            dtype=dtype,
            params=20756,
            compile_s=12.63,
            step_s=0.06186,
            tokens_per_s=16552.2,
            achieved_tflops=0.004036,
            mfu=None,
            peak_memory_bytes=14779496,
        )

    monkeypatch.setattr(bs, "bench_preset", fake)
    cfg = override(bs.cpu(), {"workdir": str(tmp_path / "run")})  # study: WORKDIR by default
    bs.main(cfg, command="python -m experiments.bench_surrogate cpu --workdir x")
    assert_study(tmp_path / "run", "python -m experiments.bench_surrogate cpu")
    report = open(tmp_path / "run" / "report.md").read()
    assert "| tiny | float32 | 20,756 | 0.0619 | 16,552 | 0.004 | 14 | 12.6 |" in report


@pytest.mark.slow
def test_smoke_writes_bench_json_and_the_study_folder(tmp_path):
    cfg = override(
        bs.smoke(),
        {
            "workdir": str(tmp_path / "run"),
            "results_dir": str(tmp_path / "study"),
            "bench.batch": 1,
            "bench.repeats": 1,
        },
    )
    command = f"python -m experiments.bench_surrogate smoke --workdir {tmp_path / 'run'}"
    out = bs.main(cfg, command=command)
    results = assert_study(tmp_path / "study", "python -m experiments.bench_surrogate smoke")
    assert results == json.load(open(tmp_path / "run" / "bench.json"))
    assert results["results"][0]["step_s"] == out["results"][0]["step_s"]
    assert [r["preset"] for r in results["results"]] == ["smoke"]
    report = open(tmp_path / "study" / "report.md").read()
    assert f"{results['results'][0]['params']:,}" in report
    assert json.load(open(tmp_path / "study" / "config.json"))["bench"]["batch"] == 1
