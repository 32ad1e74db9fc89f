"""experiments.bench_surrogate: the benchmark writes bench.json and its study folder (the
real smoke measurement compiles an AViT step, tens of seconds on 2 cores: slow); the side by
side with PyTorch MPP at a tiny size (``torch``: needs JAXFM_MPP_SRC and a Python with torch)."""

import json
import os
import re
import sys

import numpy as np
import pytest

from experiments import bench_surrogate as bs
from jaxfm.config import ConfigError, override
from jaxfm.models.surrogate import mpp_unused_params
from tests.study_check import assert_study


def test_study_folder_holds_the_table(tmp_path, monkeypatch):
    def fake(name, dtype, opts, layers, depth, attn_impl):
        return dict(
            preset=name,
            dtype=dtype,
            layers=layers,
            depth=depth or bs.AVIT_PRESETS[name].depth,
            params=20756,
            compile_s=12.63,
            step_s=0.06186,
            tokens_per_s=16552.2,
            achieved_tflops=0.004036,
            mfu=None,
            peak_memory_bytes=14779496,
            dots_in_compute_dtype=40,
            dots=40,
            attn_impl=attn_impl,
            fused_attention_calls=0,
        )

    monkeypatch.setattr(bs, "bench_preset", fake)
    cfg = override(bs.cpu(), {"workdir": str(tmp_path / "run")})  # study: WORKDIR by default
    bs.main(cfg, command="python -m experiments.bench_surrogate cpu --workdir x")
    assert_study(tmp_path / "run", "python -m experiments.bench_surrogate cpu")
    report = open(tmp_path / "run" / "report.md").read()
    assert (
        "| tiny | 4 | float32 | unroll | auto | 20,756 | 0.0619 | 16,552 | 0.004 | 14 | 12.6 |"
        in report
    )
    # the layers preset: one row per preset and way of running the blocks
    cfg = override(bs.layers(), {"workdir": str(tmp_path / "layers")})
    out = bs.main(cfg, command="python -m experiments.bench_surrogate layers")
    rows = [(r["preset"], r["layers"]) for r in out["results"]]
    assert rows == [(p, m) for p in ("Ti", "S", "B") for m in cfg.bench.layers]
    layers_report = open(tmp_path / "layers" / "report.md").read()
    # a scanned row has no TFLOP/s: XLA's cost analysis counts the loop body once
    assert "| B | 12 | float32 | scan+dots_no_batch | auto | 20,756 | 0.0619 | 16,552 | - |" in (
        layers_report
    )
    assert (
        "| B | 12 | float32 | unroll | auto | 20,756 | 0.0619 | 16,552 | 0.004 |" in layers_report
    )
    cfg = override(bs.depth(), {"workdir": str(tmp_path / "depth")})
    out = bs.main(cfg, command="python -m experiments.bench_surrogate depth")
    assert [(r["depth"], r["layers"]) for r in out["results"]] == [
        (d, m) for d in (12, 24) for m in ("unroll", "scan", "scan+full")
    ]
    assert "| Ti | 24 | float32 | scan+full |" in open(tmp_path / "depth" / "report.md").read()


def test_layers_modes_parse_and_a_bad_one_fails_before_compiling(tmp_path):
    assert bs.parse_layers("scan") == (True, "none")
    assert bs.parse_layers("unroll+full") == (False, "full")
    for bad in ("scanned", "scan+everything"):
        with pytest.raises(ConfigError, match=re.escape(f"bench.layers: '{bad}'")):
            bs.parse_layers(bad)
    cfg = override(bs.smoke(), {"workdir": str(tmp_path / "w"), "bench.layers": ("scan", "unrol")})
    with pytest.raises(ConfigError, match="'unrol'"):
        bs.main(cfg)
    assert not os.path.exists(tmp_path / "w")


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


# ------------------------------------------------------------- side by side with PyTorch MPP

MPP_SRC = os.environ.get("JAXFM_MPP_SRC", "")
TORCH_PYTHON = os.environ.get("JAXFM_TORCH_PYTHON", sys.executable)


def test_torch_side_without_mpp_checkout_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXFM_MPP_SRC", str(tmp_path / "no-mpp"))
    cfg = override(
        bs.compare(), {"workdir": str(tmp_path / "run"), "bench.torch_python": sys.executable}
    )
    with pytest.raises(ConfigError, match="JAXFM_MPP_SRC") as err:
        bs.main(cfg, command="x")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()  # nothing compiled or written
    monkeypatch.delenv("JAXFM_MPP_SRC")
    with pytest.raises(ConfigError, match="JAXFM_MPP_SRC"):
        bs.main(cfg, command="x")
    bad = override(bs.cpu(), {"workdir": str(tmp_path / "run"), "bench.compare": ("a", "zz")})
    with pytest.raises(ConfigError, match="zz"):
        bs.main(bad, command="x")  # before the presets are measured
    assert not (tmp_path / "run").exists()


def test_compare_preset_names_configs_a_to_c():
    cfg = bs.compare()
    assert cfg.bench.compare == ("a", "b", "c") and cfg.bench.presets == ()
    a, b, c = (bs.COMPARE[k] for k in "abc")
    assert (a.preset, a.batch, a.n_steps_input, a.n_fields, a.grid, a.periodic) == (
        "Ti",
        4,
        8,
        4,
        128,
        True,
    )
    assert (b.preset, b.batch, b.n_steps_input, b.n_fields, b.grid, b.periodic) == (
        "Ti",
        8,
        4,
        2,
        64,
        False,
    )
    assert (c.preset, c.batch, c.n_steps_input, c.n_fields, c.grid) == ("S", 2, 8, 4, 128)


@pytest.mark.torch
@pytest.mark.skipif(
    not os.path.isfile(os.path.join(MPP_SRC, "models", "avit.py")),
    reason="set JAXFM_MPP_SRC to an MPP checkout (and JAXFM_TORCH_PYTHON to a python with "
    "torch and einops if this one lacks them)",
)
def test_compare_tiny_runs_both_sides_interleaved(tmp_path):
    cfg = override(
        bs.compare(),
        {
            "workdir": str(tmp_path / "run"),
            "bench.compare": ("tiny",),
            "bench.torch_python": TORCH_PYTHON,
            "bench.compare_warmup": 1,
            "bench.compare_steps": 3,
            "bench.compare_block": 2,
        },
    )
    bs.main(cfg, command="python -m experiments.bench_surrogate compare")
    out = json.load(open(tmp_path / "run" / "bench.json"))
    assert out["torch"] and out["threads"] == bs.cpu_threads() and out["machine"]
    (r,) = out["compare"]
    assert (r["config"], r["dim"], r["heads"], r["depth"], r["periodic"]) == (
        "tiny",
        32,
        2,
        1,
        True,
    )
    assert r["torch_threads"] == r["threads"]
    for side in ("jax_step", "torch_step", "jax_fwd", "torch_fwd"):
        times = r[f"{side}_times"]
        assert len(times) == 3 and r[f"{side}_s"] == pytest.approx(float(np.median(times)))
    assert r["step_ratio"] == pytest.approx(r["torch_step_s"] / r["jax_step_s"])
    assert r["fwd_ratio"] == pytest.approx(r["torch_fwd_s"] / r["jax_fwd_s"])
    assert r["goal_met"] == (r["step_ratio"] >= bs.GOAL)
    assert r["jax_compile_s"] > 0 and r["torch_first_step_s"] > 0
    assert np.isfinite(r["jax_loss"]) and np.isfinite(r["torch_loss"])
    # MPP stores RMSInstanceNorm biases it never uses; jaxfm does not
    assert r["params_torch"] - r["params_jax"] == mpp_unused_params(
        bs._compare_model(bs.COMPARE["tiny"])
    )
    report = open(tmp_path / "run" / "report.md").read()
    assert f"| tiny | Ti | 1 x 2 x 2 x 32² | periodic | {r['jax_compile_s']:.1f} |" in report
    assert f"{r['step_ratio']:.2f}x" in report and out["torch"] in report


def test_compare_without_torch_times_the_jax_side_only(tmp_path, monkeypatch):
    calls = []

    def fake_side(spec):
        def train(n):
            calls.append(("train", n))
            return [0.02] * n

        def forward(n):
            calls.append(("fwd", n))
            return [0.01] * n

        cfg = bs._compare_model(spec)
        return cfg, 1234, 5.0, 2.0, train, forward, {"loss": 0.5}

    monkeypatch.setattr(bs, "_jax_side", fake_side)
    cfg = override(bs.compare(), {"workdir": str(tmp_path / "run"), "bench.compare": ("b",)})
    bs.main(cfg, command="python -m experiments.bench_surrogate compare")
    # 3 warm-ups, then 10 timed steps in turns of 2
    assert calls == [("train", 3), ("fwd", 3)] + [("train", 2)] * 5 + [("fwd", 2)] * 5
    (r,) = json.load(open(tmp_path / "run" / "bench.json"))["compare"]
    assert (r["dim"], r["heads"], r["depth"], r["batch"], r["grid"]) == (192, 3, 12, 8, 64)
    assert r["jax_step_s"] == 0.02 and r["torch_step_s"] is None and r["step_ratio"] is None
    assert r["goal_met"] is None and len(r["jax_fwd_times"]) == 10
    report = open(tmp_path / "run" / "report.md").read()
    row = "| b | Ti | 8 x 4 x 2 x 64² | open | 5.0 | - | 20.0 | - | - | 10.0 | - | - | - | "
    assert row in report


def test_profile_rows_are_reported_per_config_and_pass(tmp_path, monkeypatch):
    def fake_side(spec):
        def times(n):
            return [0.02] * n

        def profile():
            one = {
                "wall_s": 0.02,
                "ops_s": 0.018,
                "unattributed_s": 0.002,
                "by_category_s": {
                    "matmul": 0.01,
                    "reduction": 0.002,
                    "data movement": 0.004,
                    "element-wise": 0.002,
                },
                "top_ops": [{"op": "ynn_fusion.3", "category": "matmul", "s": 0.006}],
                "n_ops": 40,
            }
            return {"step": one, "fwd": one}

        return (
            bs._compare_model(spec),
            1234,
            5.0,
            2.0,
            times,
            times,
            {"loss": 0.5, "profile": profile},
        )

    monkeypatch.setattr(bs, "_jax_side", fake_side)
    cfg = override(
        bs.compare(),
        {"workdir": str(tmp_path / "run"), "bench.compare": ("b",), "bench.profile": True},
    )
    bs.main(cfg, command="python -m experiments.bench_surrogate compare")
    (r,) = json.load(open(tmp_path / "run" / "bench.json"))["compare"]
    assert r["jax_profile"]["step"]["by_category_s"]["matmul"] == 0.01
    report = open(tmp_path / "run" / "report.md").read()
    assert (
        "| b | step | 20.0 | 10.0 | 2.0 | 4.0 | 2.0 | 2.0 | ynn_fusion.3 (matmul) 6.0 |" in report
    )
    assert "| b | fwd | 20.0 |" in report
