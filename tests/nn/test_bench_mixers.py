"""The mixer benchmark's budget logic: memory is recorded at every length, timing is skipped
past the memory or time budget (the benchmark itself is never timed in tests)."""

import json

import pytest

from jaxfm.nn import bench_mixers


def test_predicted_time_extrapolates_the_last_two_points():
    done = [{"length": 1024, "time_ms": 10.0}, {"length": 2048, "time_ms": 40.0}]
    assert bench_mixers.predicted_s(done, 4096) == pytest.approx(0.16)  # slope 2
    flat = [{"length": 1024, "time_ms": 10.0}, {"length": 2048, "time_ms": 10.0}]
    assert bench_mixers.predicted_s(flat, 4096) == pytest.approx(0.02)  # at least linear
    assert bench_mixers.predicted_s(done[:1], 4096) == pytest.approx(0.16)  # one: quadratic
    assert bench_mixers.predicted_s([], 4096) is None


def test_over_budget_points_keep_their_memory(tmp_path):
    common = ["--mixers", "attention-xla", "--dim", "8", "--heads", "2", "--repeats", "1"]
    out = bench_mixers.main(
        common + ["--lengths", "32", "64", "--max_gb", "0", "--out", str(tmp_path)]
    )
    recs = out["results"]
    assert [r["length"] for r in recs] == [32, 64]
    assert all("time_ms" not in r and "max_gb" in r["skipped"] for r in recs)
    assert recs[1]["peak_bytes"] > recs[0]["peak_bytes"] > 0  # attention memory grows
    assert json.load(open(tmp_path / "bench_mixers.json"))["results"] == recs

    out = bench_mixers.main(
        common + ["--lengths", "32", "64", "--max_point_s", "1e-9", "--out", str(tmp_path)]
    )
    first, second = out["results"]
    assert first["time_ms"] > 0  # nothing to extrapolate from: timed
    assert "max_point_s" in second["skipped"] and second["peak_bytes"] > 0


def test_writes_the_study_folder(tmp_path):
    from tests.study_check import assert_study

    argv = ["--mixers", "attention-xla", "--dim", "8", "--heads", "2"]
    argv += ["--repeats", "1", "--lengths", "32", "64", "--out", str(tmp_path / "out")]
    out = bench_mixers.main(argv + ["--results_dir", str(tmp_path / "study")])
    results = assert_study(tmp_path / "study", "python -m jaxfm.nn.bench_mixers --mixers")
    assert results == json.load(open(tmp_path / "out" / "bench_mixers.json")) == out
    report = open(tmp_path / "study" / "report.md").read()
    assert "| mixer | 32 ms | 64 | peak MB 32 | 64 |" in report and "| attention-xla |" in report
    assert json.load(open(tmp_path / "study" / "config.json")) == out["args"]


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated:DeprecationWarning")
def test_a_bf16_run_computes_in_bf16_and_reaches_the_fused_kernels():
    """Parameters are cast inside the loss: the attention's matmuls run in bf16 and, lowered
    for CUDA, the fused kernels take the call (with float32 projections cuDNN and Mosaic fell
    back and Pallas ran its float32 kernels)."""
    import types

    import jax.numpy as jnp

    from jaxfm.provenance import dot_dtypes
    from kernels.cuda_lowering import MOSAIC_GPU, PALLAS_TRITON, custom_calls, lower_for_cuda

    args = types.SimpleNamespace(dim=128, heads=2, batch=1, dtype=jnp.bfloat16)
    step, params, x = bench_mixers.grad_step("attention-xla", 128, args)
    dots = dot_dtypes(step.lower(params, x).as_text())
    assert dots.get("bf16xbf16", 0) > 0 and not dots.get("f32xf32", 0), dots
    for impl, target in (("pallas", PALLAS_TRITON), ("mosaic", MOSAIC_GPU)):
        step, params, x = bench_mixers.grad_step(f"attention-{impl}", 128, args)
        assert custom_calls(lower_for_cuda(step, params, x))[target] == 3, impl
