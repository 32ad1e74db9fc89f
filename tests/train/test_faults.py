"""The training engine under faults: torn metrics lines, changed optimizer settings on resume,
and a refused resume that must leave the workdir byte for byte as it was."""

import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

from jaxfm.ckpt import CheckpointError
from jaxfm.train import run
from jaxfm.train.lock import WorkdirLock, WorkdirLockedError
from jaxfm.train.writer import MetricWriter


def _hashes(workdir):
    """sha256 of every file under ``workdir``, by relative path."""
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')
    MetricWriter(str(tmp_path)).truncate_after(2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "line 3" in err[0]
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [1, 2]


def test_malformed_line_before_the_last_is_refused(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        MetricWriter(str(tmp_path)).truncate_after(3)


def test_resume_over_a_torn_metrics_line(make_cfg, task, lorenz, capsys):
    cfg = make_cfg(**{"ckpt.every": 3})
    run(cfg, task, *lorenz)
    path = os.path.join(cfg.workdir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 7, "lo')
    run(make_cfg(**{"ckpt.every": 3, "train.steps": 8}), task, *lorenz)
    assert "line" in capsys.readouterr().err
    steps = [json.loads(ln)["step"] for ln in open(path)]
    assert steps[-1] == 8


@pytest.mark.parametrize(
    "change, key",
    [
        ({"train.optimizer": "sgd"}, "train.optimizer"),
        ({"train.clip_norm": "None"}, "train.clip_norm"),
    ],
)
def test_resume_with_changed_optimizer_names_the_key_and_writes_nothing(
    make_cfg, task, lorenz, change, key
):
    cfg = make_cfg(**{"ckpt.every": 3})
    run(cfg, task, *lorenz)
    before = _hashes(cfg.workdir)
    with pytest.raises(CheckpointError) as e:
        run(make_cfg(**{"ckpt.every": 3, "train.steps": 9, **change}), task, *lorenz)
    msg = str(e.value)
    assert "\n" not in msg and key in msg and "--init_from" in msg and "now" in msg
    assert _hashes(cfg.workdir) == before


def _ckpt(workdir, step):
    return os.path.join(workdir, "checkpoints", str(step))


def _delete_state_metadata(workdir, step):
    os.remove(os.path.join(_ckpt(workdir, step), "state", "_METADATA"))


def _delete_data_iter(workdir, step):
    import shutil

    shutil.rmtree(os.path.join(_ckpt(workdir, step), "data_iter"))


def _garble_data_iter(workdir, step):
    for root, _, files in os.walk(os.path.join(_ckpt(workdir, step), "data_iter")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\\x00garbage")


@pytest.mark.parametrize("damage", [_delete_state_metadata, _delete_data_iter, _garble_data_iter])
def test_damaged_newest_checkpoint_falls_back_with_the_same_stream(
    make_cfg, task, lorenz, capsys, damage
):
    cfg = make_cfg(**{"ckpt.every": 3})
    run(cfg, task, *lorenz)
    before = _losses(cfg.workdir)
    older = _hashes(_ckpt(cfg.workdir, 3))
    damage(cfg.workdir, 6)
    run(make_cfg(**{"ckpt.every": 3}), task, *lorenz)  # same schedule: steps 4-6 again
    out = capsys.readouterr().out
    assert "is unreadable" in out and "resumed from step 3" in out
    moved = os.listdir(os.path.join(cfg.workdir, "checkpoints_unreadable"))
    assert len(moved) == 1 and moved[0].startswith("6-")
    after = _losses(cfg.workdir)
    assert [after[s] for s in (1, 2, 3, 4, 5, 6)] == [before[s] for s in (1, 2, 3, 4, 5, 6)]
    assert older == _hashes(_ckpt(cfg.workdir, 3))  # the fallback only read it


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_no_readable_checkpoint_left_refuses_to_start_over_unless_asked(make_cfg, task, lorenz):
    cfg = make_cfg(**{"ckpt.every": 6})
    run(cfg, task, *lorenz)
    _delete_state_metadata(cfg.workdir, 6)
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        run(make_cfg(**{"ckpt.every": 6, "train.steps": 8}), task, *lorenz)
    metrics = _hashes(cfg.workdir)["metrics.jsonl"]
    with pytest.raises(CheckpointError, match="checkpoints_unreadable") as e:
        run(make_cfg(**{"ckpt.every": 6, "train.steps": 8}), task, *lorenz)
    assert "\n" not in str(e.value) and "--restart" in str(e.value)
    assert _hashes(cfg.workdir)["metrics.jsonl"] == metrics
    results = run(make_cfg(**{"ckpt.every": 6, "train.steps": 8, "restart": True}), task, *lorenz)
    assert results["step"] == 8


def _write_lock(workdir, pid, host):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".lock"), "w") as f:
        json.dump({"pid": pid, "host": host, "started": "2026-01-01T00:00:00"}, f)


def test_a_live_owner_refuses_a_second_run(make_cfg, task, lorenz):
    cfg = make_cfg()
    _write_lock(cfg.workdir, os.getppid(), socket.gethostname())  # a live process
    before = _hashes(cfg.workdir)
    with pytest.raises(WorkdirLockedError) as e:
        run(cfg, task, *lorenz)
    msg = str(e.value)
    assert "\n" not in msg and f"pid {os.getppid()}" in msg and socket.gethostname() in msg
    assert _hashes(cfg.workdir) == before  # nothing written, the owner's lock kept


def test_a_stale_lock_is_taken_over_and_every_lock_is_released(make_cfg, task, lorenz, capsys):
    cfg = make_cfg()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(cfg.workdir, dead.pid, socket.gethostname())
    run(cfg, task, *lorenz)
    err = [ln for ln in capsys.readouterr().err.splitlines() if "stale lock" in ln]
    assert len(err) == 1 and str(dead.pid) in err[0]
    assert not os.path.exists(os.path.join(cfg.workdir, ".lock"))
    with pytest.raises(CheckpointError):  # released on an exception too
        run(make_cfg(**{"train.optimizer": "sgd"}), task, *lorenz)
    assert not os.path.exists(os.path.join(cfg.workdir, ".lock"))


def test_a_held_lock_refuses_this_process_too(make_cfg):
    cfg = make_cfg()
    seen = []
    lock = WorkdirLock(cfg.workdir)
    os.makedirs(cfg.workdir, exist_ok=True)
    with lock:
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"):
            WorkdirLock(cfg.workdir).acquire()
        seen.append(os.path.exists(lock.path))
    assert seen == [True] and not os.path.exists(lock.path)


def test_disk_full_at_a_save_is_one_line_and_the_previous_checkpoint_resumes(
    make_cfg, task, lorenz, monkeypatch
):
    import errno

    import orbax.checkpoint as ocp

    from jaxfm.ckpt import DiskFullError

    cfg = make_cfg(**{"ckpt.every": 3})
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(DiskFullError) as e:
        run(cfg, task, *lorenz)
    msg = str(e.value)
    assert "\n" not in msg and cfg.workdir in msg and "MiB free" in msg and "3 is intact" in msg
    older = _hashes(_ckpt(cfg.workdir, 3))
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    results = run(make_cfg(**{"ckpt.every": 3}), task, *lorenz)
    assert results["step"] == 6 and older == _hashes(_ckpt(cfg.workdir, 3))


def test_a_workdir_that_is_a_file_is_refused_by_name(make_cfg, task, lorenz, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(NotADirectoryError, match="notes.txt is a file, not a directory"):
        run(make_cfg(workdir="notes.txt"), task, *lorenz)
    assert path.read_text() == "keep me"
