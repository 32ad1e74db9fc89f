"""The benchmark harness runs end to end (tiny, CPU) and writes well-formed JSONL/table/plot."""

from __future__ import annotations

import json

import pytest

from kernels import bench

REQUIRED = {
    "impl",
    "seq_len",
    "head_dim",
    "causal",
    "batch",
    "heads",
    "dtype",
    "device_kind",
    "versions",
    "git_sha",
    "passes",
    "status",
    "time_ms",
    "timer",
    "tflops",
    "frac_of_matmul_peak",
    "peak_bytes",
    "matmul_peak_tflops",
}


def test_bench_smoke_writes_jsonl_table_and_plot(tmp_path):
    out = tmp_path / "bench"
    rc = bench.main(
        [
            "--smoke",
            "--out",
            str(out),
            "--impls",
            "xla",
            "cudnn",
            "--seq-lens",
            "32",
            "64",
            "--causal",
            "true",
            "--repeats",
            "2",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok"]
    # xla: 2 seq lens x (fwd, bwd, fwd+bwd); cudnn: one "skipped" row per config (no GPU).
    assert len(ok) == 6 and {r["impl"] for r in ok} == {"xla"}
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert {r["impl"] for r in skipped} == {"cudnn"} and all("GPU" in r["reason"] for r in skipped)
    for r in ok:
        assert REQUIRED <= r.keys(), REQUIRED - r.keys()
        assert r["time_ms"] > 0 and r["peak_bytes"] > 0 and r["versions"]["jax"]
        fwd_flops = 4 * r["batch"] * r["heads"] * r["seq_len"] ** 2 * r["head_dim"] * 0.5
        factor = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[r["passes"]]
        expected = factor * fwd_flops / (r["time_ms"] * 1e-3) / 1e12
        assert r["tflops"] == pytest.approx(expected, rel=1e-9)
        assert r["frac_of_matmul_peak"] == pytest.approx(r["tflops"] / r["matmul_peak_tflops"])
        assert r["batch"] * r["seq_len"] == 256  # smoke: tokens fixed across the sweep
    table = (out / "bench.md").read_text().splitlines()
    assert sum(line.startswith("| xla |") for line in table) == 6
    assert any(line.startswith("- cudnn:") for line in table)
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_bench_rejects_bad_seq_len(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--seq-lens", "100"])
    assert "not a power of two" in capsys.readouterr().err
