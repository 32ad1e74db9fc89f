"""The lever ablation: variant overrides, the table, and one smoke run through the CLI's main."""

import dataclasses

import pytest

from jaxfm.tasks.surrogate.ablation import VARIANTS, ablation_table, variant_overrides
from jaxfm.tasks.surrogate.transfer import StudyOptions, parse_overrides, run_study


def test_variants_are_valid_overrides_of_the_study_presets():
    from jaxfm.config import override
    from jaxfm.tasks.surrogate.presets import FINETUNE_PRESETS, PRETRAIN_PRESETS

    for name in [*VARIANTS, "patch 4", "patch 22"]:
        every, pre = variant_overrides(name)
        ft = override(FINETUNE_PRESETS["smoke"](), parse_overrides(every))
        override(PRETRAIN_PRESETS["smoke"](), {**parse_overrides(every), **parse_overrides(pre)})
        if name == "patch 22":
            assert ft.model.avit.patch_strides == (2, 2)
    with pytest.raises(ValueError, match="unknown ablation variant 'jitter'"):
        variant_overrides("jitter")
    with pytest.raises(ValueError, match="'model.loss' is not key=value"):
        parse_overrides(("model.loss",))


def test_a_bad_override_stops_the_study_before_training(tmp_path):
    from jaxfm.config import ConfigError

    study = StudyOptions(pretrain_preset="smoke", overrides=("model.avit.jitter=true",))
    with pytest.raises(ConfigError, match="model.avit.jitter"):
        run_study(str(tmp_path), study)
    assert not (tmp_path / "pretrain").exists() and not (tmp_path / "pretrain_s0").exists()


def _row(variant, arm, n1, n5):
    return {
        "variant": variant,
        "target": "t",
        "n_train": 4,
        "arm": arm,
        "nrmse_1": (n1, float("nan")),
        "nrmse_5": (n5, float("nan")),
    }


def test_table_gives_the_change_against_the_baseline_of_the_same_arm():
    rows = [
        _row("baseline", "pretrained", 0.10, 0.40),
        _row("baseline", "scratch", 0.20, 0.50),
        _row("baseline", "persistence", 0.30, 0.60),
        _row("jit", "pretrained", 0.09, 0.44),
        _row("jit", "scratch", 0.25, 0.50),
        _row("jit", "persistence", 0.30, 0.60),
    ]
    table = ablation_table(rows)
    assert "| t | 4 | jit | pretrained | 0.0900 | -10.0% | 0.4400 | +10.0% | — |" in table
    assert "| t | 4 | jit | scratch | 0.2500 | +25.0% | 0.5000 | +0.0% | — |" in table
    assert table.count("persistence") == 1  # persistence does not depend on the variant


@pytest.mark.slow
def test_smoke_ablation_end_to_end(tmp_path):
    from experiments import surrogate_ablation

    base = surrogate_ablation.smoke()
    study = dataclasses.replace(
        base.ablation.study,
        cache_dir=str(tmp_path / "cache"),
        pretrain_steps=10,
        finetune_steps=5,
    )
    cfg = dataclasses.replace(
        base,
        workdir=str(tmp_path / "abl"),
        ablation=dataclasses.replace(base.ablation, study=study),
    )
    out = surrogate_ablation.main(cfg)
    variants = {r["variant"] for r in out["rows"]}
    assert variants == {"baseline", "increment units"}
    saved = (tmp_path / "abl" / "increment_units" / "pretrain_s0" / "config.json").read_text()
    assert '"delta_scale": "increment"' in saved
    assert "| increment units | pretrained |" in (tmp_path / "abl" / "report.md").read_text()
