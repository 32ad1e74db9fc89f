"""The surrogate's one-step eval through the engine: every system scored, exact means, per
system and per field, the headline the mean over systems."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.data.eval_windows import StratifiedWindows
from jaxfm.data.windows import WindowSource
from jaxfm.models.surrogate import avit_config
from jaxfm.parallel import make_mesh
from jaxfm.tasks.surrogate.metrics import nrmse
from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from jaxfm.train import Engine, TrainConfig, make_optimizer
from jaxfm.train.loop import evaluate
from tests.data.fixtures import random_set


@pytest.fixture(scope="module")
def setup():
    sw = random_set(4, 9, (16, 16), "shallow_water", ("h", "velocity_x", "velocity_y"))
    gs = random_set(3, 8, (16, 16), "gray_scott", ("activator", "inhibitor"), seed=1)
    # system-ordered, as build_data makes it: 4 x 5 = 20 shallow-water windows, then 12
    source = StratifiedWindows([WindowSource(sw, 4, 1), WindowSource(gs, 4, 1)], pad=4)
    cfg = SurrogateExperiment(
        model=SurrogateTaskConfig(avit=avit_config("smoke")),
        train=TrainConfig(batch_size=8, steps=1),
    )
    task = SurrogateTask(cfg.model, np.ones((8, 2), bool))
    tx, sched = make_optimizer(cfg.train)
    engine = Engine(task, cfg.train, tx, sched, make_mesh(cfg.parallel), "dp")
    state = engine.init(0)
    return task, engine, state, source


def _reference(task, engine, state, source, which):
    """float64 per-system means of the model's NRMSE, computed window by window."""
    model = engine.model(jax.device_get(state))
    per = {}
    for i in which:
        el = source[i]
        b = {k: jnp.asarray(v)[None] for k, v in el.items()}
        e = np.asarray(nrmse(task.predict_batch(model, b), b["y"][:, 0]))[0]
        per.setdefault(int(el["system"]), []).append(e[el["field_ids"] >= 0])
    return {s: float(np.mean(np.concatenate(v))) for s, v in per.items()}


def test_whole_split_is_scored_exactly_per_system(setup, capsys):
    task, engine, state, source = setup
    got = evaluate(engine, state, source, batch_size=8)  # 32 windows: 4 batches, no remainder
    assert (
        "eval: 2 systems, 32 windows (shallow_water 20, gray_scott 12)" in capsys.readouterr().out
    )
    ref = _reference(task, engine, state, source, range(len(source)))
    assert got["eval/windows/shallow_water"] == 20 and got["eval/windows/gray_scott"] == 12
    np.testing.assert_allclose(got["eval/nrmse/shallow_water"], ref[0], rtol=1e-5)
    np.testing.assert_allclose(got["eval/nrmse/gray_scott"], ref[3], rtol=1e-5)
    np.testing.assert_allclose(got["eval/nrmse"], (ref[0] + ref[3]) / 2, rtol=1e-5)
    for key in (
        "eval/nrmse/shallow_water/h",
        "eval/vrmse/gray_scott/inhibitor",
        "eval/persistence_nrmse/gray_scott/activator",
        "eval/loss/shallow_water",
    ):
        assert np.isfinite(got[key]), key
    assert "eval/nrmse/gray_scott/h" not in got


def test_a_cap_scores_every_system_alike_and_a_short_last_batch_exactly(setup, capsys):
    task, engine, state, source = setup
    # 3 batches of 8 = 24 windows: before, the head of the stream (shallow water only)
    got = evaluate(engine, state, source, batch_size=8, max_batches=3)
    assert "eval: 2 systems x 12 windows = 24 windows" in capsys.readouterr().out
    assert got["eval/windows/shallow_water"] == 12 and got["eval/windows/gray_scott"] == 12
    capped = source.limit(24)
    ref = _reference(task, engine, state, capped, range(len(capped)))
    np.testing.assert_allclose(got["eval/nrmse/gray_scott"], ref[3], rtol=1e-5)
    # 32 windows in batches of 24 (8 shards): the last batch holds 8 real windows
    short = evaluate(engine, state, source, batch_size=24)
    full = evaluate(engine, state, source, batch_size=8)
    for k in ("eval/nrmse", "eval/nrmse/shallow_water", "eval/vrmse/gray_scott/activator"):
        np.testing.assert_allclose(short[k], full[k], rtol=1e-5, err_msg=k)


def test_old_config_files_load_without_the_eval_section():
    from jaxfm.config import from_dict, to_dict

    d = to_dict(SurrogateExperiment())
    del d["eval"]
    cfg = from_dict(SurrogateExperiment, d)
    assert cfg.eval.checkpoint == "last" and cfg.eval.rollout_steps == 30
    assert dataclasses.replace(cfg, eval=cfg.eval) == cfg
