"""SIGTERM in every phase: one line saying what stopped and what is saved, exit status 143.

Real signals to this process (``os.kill``), delivered where a scheduler's notice would land:
before training (data, compile), during the final save, and while the trained model is
evaluated afterwards. The training loop's own SIGTERM (mid-run) is tested in test_loop.py.
"""

import dataclasses
import json
import os
import signal
import time

import pytest

from jaxfm.ckpt import Checkpointer
from jaxfm.config import run_cli
from jaxfm.signals import EXIT_STATUS, stage
from jaxfm.train import Preempted, run


def _sigterm_self():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises before this ends
    raise AssertionError("SIGTERM was not acted on")


@dataclasses.dataclass(frozen=True)
class _Cfg:
    x: int = 1


def test_sigterm_before_training_exits_143_with_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(lambda cfg: _sigterm_self(), _Cfg, {"p": _Cfg}, ["p"])
    assert e.value.code == EXIT_STATUS == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "SIGTERM before training started: stopped (nothing was half-written; rerun the same "
        "command to continue)"
    ]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed afterwards


def test_sigterm_in_a_named_stage_says_what_is_saved(capsys):
    def main(cfg):
        with stage("while evaluating rollouts", saved="the trained model is saved in W"):
            _sigterm_self()

    with pytest.raises(SystemExit) as e:
        run_cli(main, _Cfg, {"p": _Cfg}, ["p"])
    assert e.value.code == 143
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("SIGTERM while evaluating rollouts: stopped (the trained model is")


def test_sigterm_during_the_final_save_finishes_and_stops(make_cfg, task, lorenz, monkeypatch):
    """The run is complete and saved (status finished), but nothing after it may start."""
    real_save = Checkpointer.save

    def save_then_sigterm(self, step, *args, **kwargs):
        out = real_save(self, step, *args, **kwargs)
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # lands while the loop's handler is active
        return out

    monkeypatch.setattr(Checkpointer, "save", save_then_sigterm)
    cfg = make_cfg()
    with pytest.raises(Preempted) as e:
        run(cfg, task, *lorenz)
    assert e.value.code == 143 and e.value.step == 6
    results = json.load(open(os.path.join(cfg.workdir, "results.json")))
    assert results["status"] == "finished" and results["step"] == 6
    assert os.listdir(os.path.join(cfg.workdir, "checkpoints")) == ["6"]
    monkeypatch.setattr(Checkpointer, "save", real_save)
    assert run(cfg, task, *lorenz)["step"] == 6  # rerunning continues, nothing to redo


def test_loop_restores_the_outer_handler(make_cfg, task, lorenz):
    from jaxfm.signals import exit_on_sigterm

    with exit_on_sigterm():
        outer = signal.getsignal(signal.SIGTERM)
        run(make_cfg(), task, *lorenz)
        assert signal.getsignal(signal.SIGTERM) is outer


@pytest.mark.slow
def test_sigterm_while_evaluating_rollouts_keeps_the_model_and_reruns(
    tmp_path, capsys, monkeypatch
):
    """The surrogate pipeline's post-training phase: stop with 143, the trained model saved;
    the same command then only redoes the evaluation."""
    from jaxfm.tasks.surrogate import pipeline
    from jaxfm.tasks.surrogate.presets import PRETRAIN_PRESETS

    real = pipeline.evaluate_rollouts

    def sigterm_first(*args, **kwargs):
        _sigterm_self()

    argv = ["smoke", "--workdir", str(tmp_path / "run"), "--train.progress", "false"]
    monkeypatch.setattr(pipeline, "evaluate_rollouts", sigterm_first)
    with pytest.raises(SystemExit) as e:
        run_cli(pipeline.train, pipeline.SurrogateExperiment, PRETRAIN_PRESETS, argv)
    assert e.value.code == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("SIGTERM while evaluating rollouts: stopped (the trained model is")
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert results["status"] == "finished" and "rollout" not in results
    monkeypatch.setattr(pipeline, "evaluate_rollouts", real)
    out = run_cli(pipeline.train, pipeline.SurrogateExperiment, PRETRAIN_PRESETS, argv)
    assert out["step"] == results["step"] and "rollout" in out
    assert "resumed from step" in capsys.readouterr().out


def test_sigterm_while_generating_data_exits_143(tmp_path, monkeypatch, capsys):
    from jaxfm.data import generate

    monkeypatch.setattr(generate, "generate_system", lambda *a, **k: _sigterm_self())
    assert generate.main(["heat", "--out", str(tmp_path)]) == 143
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("SIGTERM while generating data: stopped (finished files are complete")
