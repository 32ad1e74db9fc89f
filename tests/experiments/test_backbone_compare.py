"""experiments.backbone_compare: the table is rebuilt from sibling runs; cost-only runs
need a trained run."""

import json
import os

import pytest

from experiments import backbone_compare as bc
from jaxfm.config import override
from tests.study_check import assert_study


def _result(parent, run, **kw):
    os.makedirs(parent / run)
    with open(parent / run / "results.json", "w") as f:
        json.dump(kw, f)
    with open(parent / run / "config.json", "w") as f:
        json.dump({"workdir": str(parent / run), "train": {"steps": 200}}, f)


def test_write_table_has_one_row_per_trunk_run(tmp_path):
    roll = {
        "sys_a": {"model": {"nrmse": {"mean_5": 0.3}}},
        "sys_b": {"model": {"nrmse": {"mean_5": 0.5}}},
    }
    _result(
        tmp_path,
        "attention",
        trunk="attention",
        step=200,
        rollout=roll,
        step_time_s=0.5,
        fwd_bwd_s=0.25,
        params=1234,
        step_peak_bytes=3 * 2**20,
        command="python -m experiments.backbone_compare tiny --workdir a",
        cost_command="python -m experiments.backbone_compare tiny --workdir a --cost_only true",
        **{"eval/nrmse": 0.07, "eval/persistence_nrmse": 0.09},
    )
    _result(tmp_path, "mamba", trunk="mamba", step=200)  # cost columns missing: "-"
    _result(tmp_path, "not_a_compare_run", step=5)  # no trunk: not a row
    rows = bc.write_table(str(tmp_path))
    assert_study(tmp_path, "python -m experiments.backbone_compare tiny --workdir a\n")
    assert open(tmp_path / "command.txt").read().splitlines()[1].endswith("--cost_only true")
    config = json.load(open(tmp_path / "config.json"))
    assert sorted(config["runs"]) == ["attention", "mamba"]
    assert [r["run"] for r in rows] == ["attention", "mamba"]
    assert rows[0]["rollout_nrmse_5"] == pytest.approx(0.4)  # mean over systems
    assert rows[0]["step_peak_mb"] == pytest.approx(3.0)
    md = [line for line in open(tmp_path / "report.md").read().splitlines() if "|" in line]
    assert md[0].count("|") == md[1].count("|") == md[2].count("|") == 11
    assert "| attention | attention | 200 | 0.07 | 0.09 | 0.4 | 0.500 | 0.250 | 1,234 | 3.0 |" in md
    assert md[3].startswith("| mamba | mamba | 200 | - |")
    assert json.load(open(tmp_path / "results.json")) == rows


def test_cost_only_needs_a_trained_run(tmp_path):
    cfg = override(bc.smoke(), {"workdir": str(tmp_path / "moe"), "cost_only": "true"})
    with pytest.raises(SystemExit, match="no results.json"):
        bc.main(cfg)


def test_step_cost_measures_params_memory_and_time(tmp_path):
    cfg = override(
        bc.with_trunk(bc.smoke()),
        {"workdir": str(tmp_path / "attention"), "cost_repeats": "1"},
    )
    cost = bc.step_cost(cfg)
    assert cost["params"] > 0 and cost["fwd_bwd_s"] > 0
    # XLA's compiled memory analysis (arguments + outputs + temporaries) is reported on CPU
    # too (device memory_stats() is None there): a real byte count, above the parameters'.
    peak = cost["step_peak_bytes"]
    assert isinstance(peak, int) and peak > 4 * cost["params"], peak


def test_command_line_sets_the_avit_mixers_ffn_and_their_sub_configs(capsys):
    from flax import nnx

    from jaxfm.config import cli
    from jaxfm.models.surrogate import SpaceBlock

    argv = ["smoke", "--mixer", "mamba", "--ffn=moe", "--model.avit.mamba.d_state=4"]
    argv += ["--model.avit.moe.n_experts", "3", "--model.avit.depth", "2"]
    cfg = bc.with_trunk(cli(bc.BackboneCompare, bc.PRESETS, argv))
    avit = cfg.model.avit
    assert (avit.time_mixer, avit.space_mixer, avit.ffn) == ("mamba", "mamba", "moe")
    block = SpaceBlock(avit, 0.0, rngs=nnx.Rngs(0))
    assert block.mlp.n_experts == 3 and block.mixer.forward.d_state == 4
    assert block.mixer.forward.n_layer == 2  # the AViT depth
    with pytest.raises(SystemExit):
        cli(bc.BackboneCompare, bc.PRESETS, ["smoke", "--mixer", "moe"])
    assert "invalid value 'moe' for mixer (expected one of attention, mamba, mamba2)" in (
        capsys.readouterr().err
    )
