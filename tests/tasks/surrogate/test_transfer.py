"""The transfer study's summary and findings, on a hand-made grid of runs."""

import json
import os

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


def _fake_runs(monkeypatch):
    """Replaces the study's training by records of the configs it was given: the pretraining
    writes a results.json whose NRMSE is 0.1 * (seed + 1), every run returns fixed scores."""
    from jaxfm.tasks.surrogate import transfer

    calls = {"pretrain": [], "finetune": []}

    def pretrain(cfg):
        calls["pretrain"].append(cfg)
        os.makedirs(cfg.workdir, exist_ok=True)
        e = 0.1 * (cfg.train.seed + 1)
        res = {"eval/nrmse": e, "eval/nrmse/a": e, "eval/persistence_nrmse": 1.0}
        res |= {"eval/persistence_nrmse/a": 1.0, "eval/windows": 8.0, "eval/windows/a": 8.0}
        with open(os.path.join(cfg.workdir, "results.json"), "w") as f:
            json.dump(res, f)
        return res

    def finetune(cfg):
        calls["finetune"].append(cfg)
        (t,) = cfg.data.systems
        roll = {"nrmse": {"mean_5": 0.5, "per_step": [0.3, 0.6]}}
        res = {f"eval/{k}/{t}": 0.2 for k in ("nrmse", "vrmse")}
        res |= {f"eval/persistence_{k}/{t}": 1.0 for k in ("nrmse", "vrmse")}
        res |= {f"eval/windows/{t}": 12, "rollout": {t: {"model": roll, "persistence": roll}}}
        res["rollout"][t]["steps"] = 2
        return res

    monkeypatch.setattr(transfer, "pretrain", pretrain)
    monkeypatch.setattr(transfer, "finetune", finetune)
    return calls


def _study(**kw):
    from jaxfm.tasks.surrogate.transfer import StudyOptions

    base = dict(
        pretrain_preset="smoke",
        finetune_preset="smoke",
        targets=("compressible_m1",),
        n_trains=(2,),
        seeds=(0, 3),
        arms=("pretrained", "scratch"),
    )
    return StudyOptions(**{**base, **kw})


def test_every_seed_pretrains_its_own_model_and_fine_tunes_from_it(tmp_path, monkeypatch):
    from jaxfm.tasks.surrogate.transfer import pretrain_summary, run_study

    calls = _fake_runs(monkeypatch)
    study = _study()
    runs, _ = run_study(str(tmp_path), study)
    pre = {os.path.basename(c.workdir): c.train.seed for c in calls["pretrain"]}
    assert pre == {"pretrain_s0": 0, "pretrain_s3": 3}
    init = {(c.train.seed, c.model.arch, c.init_from) for c in calls["finetune"]}
    assert init == {
        (0, "avit", str(tmp_path / "pretrain_s0")),
        (3, "avit", str(tmp_path / "pretrain_s3")),
        (0, "avit", None),
        (3, "avit", None),
    }
    assert {r["nrmse_roll1"] for r in runs} == {0.3}
    summary = pretrain_summary(str(tmp_path), study)
    assert summary["seeds"] == [0, 3] and summary["windows"] == {"total": 8.0, "a": 8.0}
    # mean and standard error over the seeds' NRMSE 0.1 and 0.4
    assert summary["nrmse"]["a"] == pytest.approx([0.25, 0.15])
    assert summary["persistence_nrmse"]["mean"] == pytest.approx([1.0, 0.0])


def test_one_pretraining_for_every_seed_when_asked(tmp_path, monkeypatch):
    from jaxfm.tasks.surrogate.presets import PRETRAIN_PRESETS
    from jaxfm.tasks.surrogate.transfer import pretrain_summary, run_study

    calls = _fake_runs(monkeypatch)
    study = _study(pretrain_per_seed=False)
    run_study(str(tmp_path), study)
    (pre,) = calls["pretrain"]
    assert pre.workdir == str(tmp_path / "pretrain")
    assert pre.train.seed == PRETRAIN_PRESETS["smoke"]().train.seed  # the preset's own
    assert {c.init_from for c in calls["finetune"] if c.init_from} == {pre.workdir}
    assert pretrain_summary(str(tmp_path), study)["nrmse"]["a"] == pytest.approx(0.1)
    assert pretrain_summary(str(tmp_path))["nrmse"]["a"] == pytest.approx(0.1)


def test_a_study_is_not_resumed_in_the_other_pretraining_layout(tmp_path, monkeypatch):
    from jaxfm.tasks.surrogate.transfer import run_study

    calls = _fake_runs(monkeypatch)
    (tmp_path / "old" / "pretrain").mkdir(parents=True)
    with pytest.raises(ValueError, match="pretrained once; resume it with"):
        run_study(str(tmp_path / "old"), _study())
    (tmp_path / "new" / "pretrain_s0").mkdir(parents=True)
    with pytest.raises(ValueError, match="once per seed"):
        run_study(str(tmp_path / "new"), _study(pretrain_per_seed=False))
    assert calls == {"pretrain": [], "finetune": []}


def test_rewrite_report_of_a_per_seed_study_shows_the_pretraining_mean_and_error(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"runs": _runs(), "wall_time_s": 60.0}))
    study = {"seeds": [0, 1], "pretrain_per_seed": True}
    (tmp_path / "config.json").write_text(json.dumps({"study": study}))
    (tmp_path / "command.txt").write_text("cmd\n")
    for seed, e in ((0, 0.2), (1, 0.3)):
        (tmp_path / f"pretrain_s{seed}").mkdir()
        res = {"eval/nrmse": e, "eval/nrmse/a": e, "eval/persistence_nrmse": 0.5}
        res |= {"eval/persistence_nrmse/a": 0.5, "eval/windows": 32.0, "eval/windows/a": 32.0}
        (tmp_path / f"pretrain_s{seed}" / "results.json").write_text(json.dumps(res))
    out = rewrite_report(str(tmp_path))
    assert out["pretrain"]["nrmse"]["a"] == pytest.approx([0.25, 0.05])
    text = (tmp_path / "report.md").read_text()
    assert "mean ± standard error over pretraining seeds [0, 1]" in text
    assert "| a | 0.2500 ± 0.0500 | 0.5000 ± 0.0000 | 32 |" in text
    assert "| mean over systems | 0.2500 ± 0.0500 | 0.5000 ± 0.0000 | 32 |" in text


def test_rewrite_report_keeps_the_pretraining_summary_when_its_runs_are_not_there(tmp_path):
    """A study folder copied without its runs (results/) still reports its pretraining."""
    pre = {"nrmse": {"mean": 0.25, "a": 0.25}, "persistence_nrmse": {"mean": 0.5, "a": 0.5}}
    pre["windows"] = {"total": 64.0, "a": 64.0}
    out = {"runs": _runs(), "wall_time_s": 60.0, "pretrain": pre}
    (tmp_path / "results.json").write_text(json.dumps(out))
    (tmp_path / "config.json").write_text(json.dumps({"study": {"seeds": [0, 1]}}))
    (tmp_path / "command.txt").write_text("cmd\n")
    assert rewrite_report(str(tmp_path))["pretrain"] == pre
    assert "| a | 0.2500 | 0.5000 | 64 |" in (tmp_path / "report.md").read_text()
