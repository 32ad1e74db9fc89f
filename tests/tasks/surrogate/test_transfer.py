"""The transfer study's summary and findings, on a hand-made grid of runs."""

import json

import pytest

from jaxfm.tasks.surrogate.transfer import findings, rewrite_report, summarize


def _runs():
    # One cell (target t, 4 trajectories), two seeds; errors chosen so the answers are exact.
    err = {"pretrained": (0.8, 1.2), "scratch": (1.0, 2.0), "fno": (0.7, 1.5), "unet": (0.9, 1.0)}
    runs = []
    for seed in (0, 1):
        for arm, (e1, e5) in err.items():
            runs.append(
                {
                    "target": "t",
                    "n_train": 4,
                    "seed": seed,
                    "arm": arm,
                    "nrmse_1": e1 + 0.01 * seed,
                    "vrmse_1": 1.0,
                    "nrmse_5": e5 + 0.01 * seed,
                    "persist_nrmse_1": 2.0,
                    "persist_vrmse_1": 1.0,
                    "persist_nrmse_5": 3.0,
                }
            )
    return runs


def test_findings_are_the_gains_and_wins_of_the_means():
    f = findings(summarize(_runs()))
    gains = {g["metric"]: g["gain_pct"] for g in f["gains"]}
    assert gains["nrmse_1"] == pytest.approx(100 * (1 - 0.805 / 1.005))
    assert gains["nrmse_5"] == pytest.approx(100 * (1 - 1.205 / 2.005))
    # fno beats both AViT arms one step (0.705 < 0.805) but not over 5 steps (1.505 > 1.205);
    # unet loses one step (0.905 > 0.805) and wins over 5 steps (1.005 < 1.205).
    assert f["baseline_wins"] == {"fno": 1, "unet": 1} and f["cells"] == 2


def test_rewrite_report_keeps_the_runs_and_adds_the_findings(tmp_path):
    runs = _runs()
    (tmp_path / "results.json").write_text(json.dumps({"runs": runs, "wall_time_s": 60.0}))
    (tmp_path / "config.json").write_text(json.dumps({"study": {"seeds": [0, 1]}}))
    (tmp_path / "command.txt").write_text("python -m experiments.surrogate_transfer cpu\n")
    out = rewrite_report(str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["runs"] == runs and saved["findings"] == out["findings"]
    text = (tmp_path / "report.md").read_text()
    assert "python -m experiments.surrogate_transfer cpu" in text
    assert f"{out['findings']['gains'][0]['gain_pct']:.1f}%" in text
    with pytest.raises(SystemExit, match="no results.json"):
        rewrite_report(str(tmp_path / "missing"))


def test_report_says_how_many_windows_per_target_were_scored():
    from jaxfm.tasks.surrogate.transfer import StudyOptions, report

    runs = [{**r, "eval_windows": 136} for r in _runs()]
    text = report(summarize(runs), StudyOptions(seeds=(0, 1)), 60.0, "cmd")
    assert "one-step windows scored per target" in text and "t: 136" in text
    old = report(summarize(_runs()), StudyOptions(seeds=(0, 1)), 60.0, "cmd")
    assert "not recorded by these runs" in old  # studies run before the count was kept


def test_report_includes_the_pretraining_eval_per_system(tmp_path):
    """The pretraining run's one-step eval (every pretraining system, its window count) is
    kept in the study's results and report, not only in the run folder."""
    runs = _runs()
    (tmp_path / "results.json").write_text(json.dumps({"runs": runs, "wall_time_s": 60.0}))
    (tmp_path / "config.json").write_text(json.dumps({"study": {"seeds": [0, 1]}}))
    (tmp_path / "command.txt").write_text("cmd\n")
    (tmp_path / "pretrain").mkdir()
    pre = {
        "eval/nrmse": 0.25,
        "eval/nrmse/a": 0.2,
        "eval/nrmse/b": 0.3,
        "eval/nrmse/b/velocity_x": 0.9,  # per field: not a system row
        "eval/persistence_nrmse": 0.5,
        "eval/persistence_nrmse/a": 0.4,
        "eval/persistence_nrmse/b": 0.6,
        "eval/windows": 64.0,
        "eval/windows/a": 32.0,
        "eval/windows/b": 32.0,
    }
    (tmp_path / "pretrain" / "results.json").write_text(json.dumps(pre))
    out = rewrite_report(str(tmp_path))
    assert out["pretrain"]["nrmse"] == {"mean": 0.25, "a": 0.2, "b": 0.3}
    assert out["pretrain"]["windows"] == {"total": 64.0, "a": 32.0, "b": 32.0}
    text = (tmp_path / "report.md").read_text()
    assert "| b | 0.3000 | 0.6000 | 32 |" in text
    assert "| mean over systems | 0.2500 | 0.5000 | 64 |" in text


def test_report_shows_rollout_step_one_beside_the_one_step_mean():
    from jaxfm.tasks.surrogate.transfer import StudyOptions, report

    runs = _runs()
    old = report(summarize(runs), StudyOptions(), 60.0, "cmd")
    assert "| t | 4 | pretrained | 0.8050 ± 0.0050 | 1.0000 ± 0.0000 | — |" in old
    for r in runs:
        r["nrmse_roll1"], r["persist_nrmse_roll1"] = r["nrmse_1"] + 0.1, 2.5
    text = report(summarize(runs), StudyOptions(), 60.0, "cmd")
    assert "| t | 4 | pretrained | 0.8050 ± 0.0050 | 1.0000 ± 0.0000 | 0.9050 ± 0.0050 |" in text
    assert "| t | 4 | persistence | 2.0000 ± 0.0000 | 1.0000 ± 0.0000 | 2.5000 ± 0.0000 |" in text
    assert "first window of each rolled-out trajectory" in text
