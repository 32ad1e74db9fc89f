"""The surrogate pipeline end to end at smoke size (pretrain -> fine-tune -> rollout ->
report), and learning on a tiny set: the AViT must beat persistence on advected fields."""

import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxfm.models.surrogate import avit_config
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig


def _advected(n, seed, size=32, frames=6):
    """Smooth periodic fields moving one cell per frame along W (2 fields, one offset)."""
    rng = np.random.default_rng(seed)
    g = np.arange(size) / size * 2 * np.pi
    X, Y = np.meshgrid(g, g, indexing="ij")
    out = np.zeros((n, frames, size, size, 2), np.float32)
    for i in range(n):
        for c in range(2):
            f = sum(
                rng.normal()
                * np.cos(
                    rng.integers(0, 3) * X + rng.integers(0, 3) * Y + rng.uniform(0, 2 * np.pi)
                )
                for _ in range(3)
            )
            for t in range(frames):
                out[i, t, ..., c] = np.roll(f, t, axis=1) + 5.0 * c
    x = np.concatenate([out[:, s : s + 3] for s in range(frames - 3)])
    y = np.concatenate([out[:, s + 3 : s + 4] for s in range(frames - 3)])
    return x, y


@pytest.mark.slow
def test_avit_learns_advection_and_beats_persistence():
    xtr, ytr = _advected(32, 0)
    xte, yte = _advected(8, 1)
    task = SurrogateTask(SurrogateTaskConfig(avit=avit_config("smoke")), np.array([[True, True]]))
    model = task.build_model(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    def batch(x, y):
        return {
            "x": jnp.asarray(x),
            "y": jnp.asarray(y),
            "field_ids": jnp.broadcast_to(jnp.array([0, 1]), (x.shape[0], 2)),
            "system": jnp.zeros(x.shape[0], jnp.int32),
        }

    @nnx.jit
    def step(model, opt, b, rngs):
        (loss, _), g = nnx.value_and_grad(lambda m: task.loss(m, b, rngs), has_aux=True)(model)
        opt.update(model, g)
        return loss

    ev = nnx.jit(task.eval_metrics)
    before = {k: float(v) for k, v in ev(model, batch(xte, yte)).items()}
    # delta head with zero output: the untrained model *is* persistence
    assert before["nrmse"] == pytest.approx(before["persistence_nrmse"], rel=1e-4)
    rng, rngs, losses = np.random.default_rng(0), nnx.Rngs(dropout=0), []
    for _ in range(150):
        idx = rng.integers(0, len(xtr), 16)
        losses.append(float(step(model, opt, batch(xtr[idx], ytr[idx]), rngs)))
    after = {k: float(v) for k, v in ev(model, batch(xte, yte)).items()}
    # observed: loss 0.04 -> 0.003, held-out NRMSE 0.105 -> 0.067 (persistence 0.105)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    assert after["nrmse"] < 0.85 * after["persistence_nrmse"]


@pytest.mark.slow
def test_smoke_transfer_study_end_to_end(tmp_path):
    from experiments import surrogate_rollout, surrogate_transfer

    base = surrogate_transfer.smoke()
    cfg = dataclasses.replace(
        base,
        workdir=str(tmp_path / "study"),
        study=dataclasses.replace(
            base.study,
            arms=("pretrained", "scratch"),
            cache_dir=str(tmp_path / "cache"),
            pretrain_steps=30,
            finetune_steps=10,
        ),
    )
    out = surrogate_transfer.main(cfg)
    arms = {r["arm"] for r in out["summary"]}
    assert arms == {"pretrained", "scratch", "persistence"}
    assert all(np.isfinite(r["nrmse_1"][0]) for r in out["summary"])
    report = open(tmp_path / "study" / "report.md").read()
    assert "| compressible_m1 | 2 | pretrained |" in report
    # 30 smoke steps on 4 mixed systems are too few and too noisy to demand a falling loss
    # (test_avit_learns_advection_and_beats_persistence proves learning); require that
    # training kept the delta model at least as good as its persistence starting point.
    pre = json.load(open(tmp_path / "study" / "pretrain_s0" / "results.json"))
    assert np.isfinite(pre["train/loss"])
    assert pre["eval/nrmse"] < 1.02 * pre["eval/persistence_nrmse"]
    assert json.load(open(tmp_path / "study" / "pretrain_s0" / "config.json"))["train"]["seed"] == 0
    assert out["pretrain"]["seeds"] == [0] and "pretraining seeds [0]" in report
    # the pretrained arm started from its seed's pretraining checkpoint, the scratch one did not
    ft = tmp_path / "study" / "compressible_m1_n2_pretrained_s0"
    assert json.load(open(ft / "config.json"))["init_from"].endswith("pretrain_s0")
    scratch = tmp_path / "study" / "compressible_m1_n2_scratch_s0"
    assert json.load(open(scratch / "config.json"))["init_from"] is None
    # rollout evaluation of a finished run, with plots and report
    res = surrogate_rollout.main(
        surrogate_rollout.RolloutConfig(
            workdir=str(ft), rollout=surrogate_rollout.RolloutOptions(steps=5)
        )
    )
    assert set(res["rollout_eval"]["compressible_m1"]["model"]["nrmse"]["windows"]) == {"1", "2-5"}
    assert os.path.exists(ft / "rollout_compressible_m1.png")
    assert os.path.exists(ft / "error_vs_step_compressible_m1.png")
