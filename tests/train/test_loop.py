"""The training loop end to end: outputs, resume after SIGKILL, SIGTERM, unreadable
checkpoints, resharded restore, --init_from, NaN guard, batch arithmetic, config mismatch."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.ckpt import Checkpointer
from jaxfm.train import ConfigMismatchError, NonFiniteError, load_state, run
from jaxfm.train.loop import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "experiments", "quickstart.py")


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_run_writes_the_workdir_contract(make_cfg, task, lorenz):
    cfg = make_cfg(**{"ckpt.every": 3, "train.eval_every": 3})
    results = run(cfg, task, *lorenz)
    wd = cfg.workdir
    assert json.load(open(os.path.join(wd, "config.json")))["train"]["steps"] == 6
    records = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    for key in ("lr", "step_time_s", "examples_per_s", "grad_norm"):
        assert key in train[-1]
    assert any("eval/loss" in r for r in records)
    assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["3", "6"]
    on_disk = json.load(open(os.path.join(wd, "results.json")))
    assert on_disk == json.loads(json.dumps(results)) and on_disk["step"] == 6
    assert train[-1]["loss"] < train[0]["loss"]


def _start(workdir, *extra, env=None):
    args = [
        sys.executable,
        QUICKSTART,
        "smoke",
        "--workdir",
        workdir,
        "--train.log_every",
        "1",
        "--train.progress",
        "false",
        *extra,
    ]
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        **(env or {}),
    }
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def _wait_for_checkpoint(workdir, step, proc, timeout=120):
    marker = os.path.join(workdir, "checkpoints", str(step), "_CHECKPOINT_METADATA")
    t0 = time.time()
    while not os.path.exists(marker):
        if proc.poll() is not None:
            raise AssertionError(f"run ended before checkpoint {step}:\n{proc.stdout.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no checkpoint {step} after {timeout}s")
        time.sleep(0.02)


def test_sigkill_then_resume_gives_identical_losses(tmp_path):
    common = ["--train.steps", "100", "--ckpt.every", "20", "--train.eval_every", "0"]
    ref = tmp_path / "ref"
    p = _start(str(ref), *common)
    assert p.wait(timeout=300) == 0, p.stdout.read()
    killed = tmp_path / "killed"
    p = _start(str(killed), *common)
    _wait_for_checkpoint(str(killed), 40, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not os.path.exists(killed / "results.json")
    p = _start(str(killed), *common)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert "resumed from step" in out
    assert _losses(str(killed)) == _losses(str(ref))  # bit for bit, step for step


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    wd = tmp_path / "term"
    p = _start(str(wd), "--train.steps", "100000", "--ckpt.every", "20")
    _wait_for_checkpoint(str(wd), 20, p)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    # 143: the script stops (nothing after run() executes) and the shell sees it unfinished.
    assert p.returncode == 143, out
    assert "SIGTERM: saved checkpoint at step" in out
    step = json.load(open(wd / "results.json"))["step"]
    assert json.load(open(wd / "results.json"))["status"] == "terminated"
    assert "plots" not in json.load(open(wd / "results.json"))  # quickstart's post-run step
    assert os.path.isdir(wd / "checkpoints" / str(step)) and step >= 20


def test_unreadable_newest_checkpoint_falls_back(make_cfg, task, lorenz, capsys):
    cfg = make_cfg(**{"ckpt.every": 3})
    run(cfg, task, *lorenz)
    ckpt_dir = os.path.join(cfg.workdir, "checkpoints")
    # Truncate every data file of the newest checkpoint's state (a half-written copy).
    for root, _, files in os.walk(os.path.join(ckpt_dir, "6", "state")):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(0)
    before = _losses(cfg.workdir)
    results = run(make_cfg(**{"ckpt.every": 3, "train.steps": 8}), task, *lorenz)
    out = capsys.readouterr().out
    assert "is unreadable" in out and "resumed from step 3" in out
    moved = os.listdir(os.path.join(cfg.workdir, "checkpoints_unreadable"))
    assert len(moved) == 1 and moved[0].startswith("6-")  # kept, not deleted
    assert results["step"] == 8
    after = _losses(cfg.workdir)
    assert [after[s] for s in (1, 2, 3)] == [before[s] for s in (1, 2, 3)]
    assert after[4] == before[4]  # the data stream resumed exactly after step 3


def test_restore_onto_a_different_device_count(make_cfg, task, lorenz):
    from jaxfm.config import override

    cfg8 = make_cfg(**{"parallel.strategy": "fsdp", "parallel.data": 1, "parallel.fsdp": 8})
    run(cfg8, task, *lorenz)
    engine8, state8, step8 = load_state(cfg8.workdir, task, cfg8)
    # 8 -> 1: the same checkpoint restored on a one-device mesh
    cfg1 = override(cfg8, {"parallel.strategy": "dp", "parallel.data": 1, "parallel.fsdp": 1})
    _, state1, step1 = load_state(cfg8.workdir, task, cfg1, devices=jax.devices()[:1])
    assert step1 == step8 == 6
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(state1["params"]))
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.device_get(state1["params"]),
        jax.device_get(state8["params"]),
    )
    # 1 -> 8: save from the 1-device state, restore onto the 8-device fsdp mesh
    d1 = os.path.join(os.path.dirname(cfg8.workdir), "one", "checkpoints")
    ck = Checkpointer(d1)
    ck.save(6, state1)
    ck.close()
    back = Checkpointer(d1, read_only=True)
    _, state_back, _ = back.restore(engine8.abstract_state)
    back.close()
    for x in jax.tree.leaves(state_back["params"]):
        assert len(x.sharding.device_set) == 8
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.device_get(state_back["params"]),
        jax.device_get(state8["params"]),
    )


def test_init_from_loads_parameters_only(make_cfg, task, lorenz):
    pre = make_cfg("pre")
    run(pre, task, *lorenz)
    _, pre_state, _ = load_state(pre.workdir, task, pre)
    fine = make_cfg("fine", **{"init_from": pre.workdir, "train.steps": 0})
    results = run(fine, task, *lorenz)
    _, state, step = load_state(fine.workdir, task, fine)
    assert step == 0 and results["step"] == 0
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.device_get(state["params"]),
        jax.device_get(pre_state["params"]),
    )
    assert int(state["opt_state"][1][0].count) == 0  # optimizer state starts fresh
    with pytest.raises(Exception, match="no such checkpoint directory"):
        run(make_cfg("bad", init_from=str(pre.workdir) + "-missing"), task, *lorenz)


def test_nan_guard_names_step_and_metric_and_keeps_last_good_checkpoint(make_cfg, task, lorenz):
    train, held = lorenz
    arrays = {k: v.copy() for k, v in train.arrays.items()}
    from jaxfm.data.sources import ArraySource

    arrays["x"][:] = np.nan  # every example poisoned: the first step's loss is NaN
    cfg = make_cfg(**{"ckpt.every": 2})
    with pytest.raises(NonFiniteError, match=r"loss is nan at step 1"):
        run(cfg, task, ArraySource(arrays, "poisoned"), held)
    assert not os.path.exists(os.path.join(cfg.workdir, "checkpoints", "2"))

    good = make_cfg("good", **{"ckpt.every": 2, "train.steps": 4})
    run(good, task, train, held)
    with pytest.raises(NonFiniteError):
        run(
            make_cfg("good", **{"ckpt.every": 2, "train.steps": 8}),
            task,
            ArraySource(arrays, "poisoned"),
            held,
        )
    assert sorted(os.listdir(os.path.join(good.workdir, "checkpoints"))) == ["2", "4"]


def test_batch_not_divisible_explains_the_arithmetic(make_cfg, task, lorenz):
    with pytest.raises(
        ValueError,
        match=r"micro-batch 12 .* not divisible by the 8 "
        r"data-parallel shards .* use a multiple of 8",
    ):
        run(make_cfg(**{"train.batch_size": 12}), task, *lorenz)


def test_resuming_with_a_different_model_is_refused(make_cfg, task, lorenz):
    cfg = make_cfg()
    run(cfg, task, *lorenz)
    with pytest.raises(ConfigMismatchError, match=r"model.hidden=64.*model.hidden=32"):
        run(make_cfg(**{"model.hidden": 32}), task, *lorenz)
    assert sorted(os.listdir(os.path.join(cfg.workdir, "checkpoints"))) == ["6"]


def test_evaluate_is_the_mean_over_the_eval_set(make_cfg, task, lorenz):
    from jaxfm.parallel import make_mesh
    from jaxfm.train import Engine, make_optimizer

    cfg = make_cfg()
    tx, sched = make_optimizer(cfg.train)
    engine = Engine(task, cfg.train, tx, sched, make_mesh(cfg.parallel), "dp")
    state = engine.init(0)
    held = lorenz[1]
    got = evaluate(engine, state, held, batch_size=16)
    model = engine.model(jax.device_get(state))
    x, y = held.arrays["x"], held.arrays["y"]
    n = len(x) // 16 * 16
    ref = float(jnp.mean((model(jnp.asarray(x[:n])) - y[:n]) ** 2))
    np.testing.assert_allclose(got["eval/mse"], ref, rtol=1e-5)


def test_keep_newest_plus_best_and_tensorboard(make_cfg, task, lorenz):
    # best_mode=max ranks the *highest* eval loss best, which is the earliest evaluation of
    # a run whose loss falls: a deterministic way to see BestN keep an old checkpoint.
    cfg = make_cfg(
        **{
            "train.steps": 8,
            "train.eval_every": 2,
            "ckpt.every": 2,
            "ckpt.keep": 1,
            "ckpt.keep_best": 1,
            "ckpt.best_mode": "max",
            "train.tensorboard": "true",
        }
    )
    run(cfg, task, *lorenz)
    evals = {
        r["step"]: r["eval/loss"]
        for r in map(json.loads, open(os.path.join(cfg.workdir, "metrics.jsonl")))
        if "eval/loss" in r
    }
    worst = max(evals, key=evals.get)
    kept = sorted(int(s) for s in os.listdir(os.path.join(cfg.workdir, "checkpoints")))
    assert kept == sorted({worst, 8}), (kept, evals)
    events = os.listdir(os.path.join(cfg.workdir, "tb"))
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_resume_check_reads_an_older_config_layout_through_migrate_dict(tmp_path):
    """A config saved before a field was renamed resumes; a real difference is still refused."""
    import dataclasses
    import json

    from jaxfm.config import ExperimentConfig
    from jaxfm.train.loop import _check_same_run

    @dataclasses.dataclass(frozen=True)
    class Model:
        width: int = 8

        @classmethod
        def migrate_dict(cls, data):
            if "hidden" in data:  # the old name of ``width``
                data["width"] = data.pop("hidden")
            return data

    @dataclasses.dataclass(frozen=True)
    class Cfg(ExperimentConfig):
        model: Model = dataclasses.field(default_factory=Model)

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": {"hidden": 8}}))
    _check_same_run(str(path), Cfg())
    with pytest.raises(ConfigMismatchError, match=r"model.width=8.*model.width=16"):
        _check_same_run(str(path), Cfg(model=Model(width=16)))


def test_best_checkpoint_is_loaded_on_request(make_cfg, task, lorenz):
    # best_mode=max: the highest eval loss (an early evaluation) ranks best, so best != last
    cfg = make_cfg(
        **{
            "train.steps": 8,
            "train.eval_every": 2,
            "ckpt.every": 2,
            "ckpt.keep": 1,
            "ckpt.keep_best": 1,
            "ckpt.best_mode": "max",
        }
    )
    run(cfg, task, *lorenz)
    evals = {
        r["step"]: r["eval/loss"]
        for r in map(json.loads, open(os.path.join(cfg.workdir, "metrics.jsonl")))
        if "eval/loss" in r
    }
    worst = max(evals, key=evals.get)
    assert worst != 8
    assert load_state(cfg.workdir, task, cfg, checkpoint="best")[2] == worst
    assert load_state(cfg.workdir, task, cfg)[2] == 8
    with pytest.raises(ValueError, match="choose one of last, best"):
        load_state(cfg.workdir, task, cfg, checkpoint="newest")


def _metric_lines(workdir):
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return sum(1 for line in f if '"loss"' in line)
    except FileNotFoundError:
        return 0


def _saving(workdir):
    """True while Orbax writes a checkpoint (its temporary folder exists)."""
    try:
        return any("tmp" in name for name in os.listdir(os.path.join(workdir, "checkpoints")))
    except FileNotFoundError:
        return False


def _kill_when(proc, ready, timeout=120):
    t0 = time.time()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its kill point:\n{proc.stdout.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"kill point not reached after {timeout}s")
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_ten_random_sigkills_some_during_a_save_resume_identically(tmp_path):
    """One workdir killed at 10 seeded random points (every other one while a checkpoint is
    being written), then run to the end: every step's loss equals the uninterrupted run's."""
    common = ["--train.steps", "150", "--ckpt.every", "5", "--train.eval_every", "0"]
    ref = tmp_path / "ref"
    p = _start(str(ref), *common)
    assert p.wait(timeout=300) == 0, p.stdout.read()
    wd = str(tmp_path / "killed")
    rng = np.random.default_rng(0)
    during_save = 0
    for i in range(10):
        p = _start(wd, *common)
        if i % 2:  # after a random number of further steps
            target = _metric_lines(wd) + int(rng.integers(1, 12))
            _kill_when(p, lambda n=target: _metric_lines(wd) >= n)
        else:  # as soon as a save is under way, after a random number of steps
            target = _metric_lines(wd) + int(rng.integers(0, 8))
            _kill_when(p, lambda n=target: _metric_lines(wd) >= n and _saving(wd))
            during_save += _saving(wd)  # the half-written checkpoint is still there
    assert not os.path.exists(os.path.join(wd, "results.json"))
    assert during_save >= 3, f"only {during_save} of 5 kills landed during a save"
    p = _start(wd, *common)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert _losses(wd) == _losses(str(ref))  # bit for bit, step for step
