"""Learning test: contrastive training beats a random-initialised control on held-out galaxies.

A small ViT + SpecFormer pair is trained with symmetric InfoNCE (the ``ContrastiveTask`` loss,
same NNX filter for gradient and optimizer) on synthetic galaxies, then evaluated on a held-out
gallery with the functions of ``jaxfm.tasks.contrastive.retrieval``. Thresholds are written as
multiples of
chance k/N (N = gallery size) and of the random-init control; they sit at about half of what
the runs measured (numbers in docs/contrastive.md), so seed noise does not flake them while a
model that learns nothing (or an evaluation leak that lets the control score) fails.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxfm.data.galaxies import GalaxyConfig, generate
from jaxfm.models.contrastive import ContrastiveConfig
from jaxfm.models.specformer import SpecFormerConfig
from jaxfm.models.vit import ViTConfig
from jaxfm.nn.trunk import AttentionConfig, TrunkConfig
from jaxfm.tasks.contrastive.retrieval import knn_r2, topk_accuracy
from jaxfm.tasks.contrastive.task import ContrastiveTask, embed_records

PROPS = ("redshift", "log_mass", "log_ssfr")


def _train(
    cfg: ContrastiveConfig, data: GalaxyConfig, *, steps: int, batch: int, lr: float, seed: int = 0
):
    train, gallery = generate(data.n_train, data, 0), generate(data.n_eval, data, 1)
    task = ContrastiveTask(cfg)
    model = task.build_model(nnx.Rngs(seed))
    control = embed_records(task.build_model(nnx.Rngs(seed + 100)), gallery)
    control_train = embed_records(task.build_model(nnx.Rngs(seed + 100)), train)
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, steps // 10, steps, lr / 20)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.05))
    opt = nnx.Optimizer(model, tx, wrt=task.trainable)

    @nnx.jit
    def step(model, opt, b, rngs):
        diff = nnx.DiffState(0, task.trainable)
        (loss, _), g = nnx.value_and_grad(
            lambda m: task.loss(m, b, rngs), has_aux=True, argnums=diff
        )(model)
        opt.update(model, g)
        return loss

    rng, rngs, losses = np.random.default_rng(seed), nnx.Rngs(dropout=seed), []
    for _ in range(steps):
        idx = rng.choice(len(train["image"]), batch, replace=False)
        img = np.rot90(train["image"][idx], int(rng.integers(4)), axes=(1, 2))  # augmentation
        b = {
            "image": jnp.asarray(np.ascontiguousarray(img)),
            "spectrum": jnp.asarray(train["spectrum"][idx]),
        }
        losses.append(float(step(model, opt, b, rngs)))
    return (
        embed_records(model, gallery),
        embed_records(model, train),
        control,
        control_train,
        train,
        gallery,
        losses,
    )


def _check(result, *, batch: int, top5_min: float, r2_min: dict, k: int = 16):
    emb, emb_tr, ctl, ctl_tr, train, gallery, losses = result
    n = len(gallery["redshift"])
    chance5 = 5 / n
    summary = {}
    tr_props = {p: train[p] for p in PROPS}
    te_props = {p: gallery[p] for p in PROPS}
    for q, g in (("image", "spectrum"), ("spectrum", "image")):
        acc, acc0 = topk_accuracy(emb[q], emb[g]), topk_accuracy(ctl[q], ctl[g])
        summary[f"{q[0]}2{g[0]}"] = (acc["top1"], acc["top5"], acc0["top5"])
        assert acc["top5"] >= top5_min, (q, acc)
        assert acc0["top5"] <= 5 * chance5, (q, acc0)  # control near chance: no leak
    # cross-modal k-NN: image queries against spectrum neighbours (and back)
    r2 = knn_r2(emb_tr["spectrum"], tr_props, emb["image"], te_props, k=k)
    r2_ctl = knn_r2(ctl_tr["spectrum"], tr_props, ctl["image"], te_props, k=k)
    print(
        f"\nN={n} retrieval (top1, top5, control top5) {summary}; i2s k-NN R^2 {r2}; "
        f"control {r2_ctl}; final loss {np.mean(losses[-10:]):.3f} (log B {np.log(batch):.3f})"
    )
    for p in PROPS:
        assert r2[p] >= r2_min[p], (p, r2)
        assert r2_ctl[p] <= 0.1, (p, r2_ctl)
    assert np.mean(losses[-10:]) <= 0.75 * np.log(batch), losses[-10:]


def test_contrastive_learning_beats_random_init():
    """~150 small steps: a few times chance in retrieval, clearly positive cross-modal R^2."""
    trunk = TrunkConfig(depth=1, dim=32, attention=AttentionConfig(heads=2))
    cfg = ContrastiveConfig(
        vit=ViTConfig(image_size=16, patch=4, trunk=trunk),
        spectrum=SpecFormerConfig(spectrum_len=128, trunk=trunk),
        embed_dim=32,
        head_heads=2,
        head_mlp_ratio=2.0,
    )
    data = GalaxyConfig(n_train=1024, n_eval=256, image_size=16, spectrum_len=128)
    res = _train(cfg, data, steps=150, batch=64, lr=3e-3)
    _check(res, batch=64, top5_min=0.1, r2_min={"redshift": 0.3, "log_mass": 0.3, "log_ssfr": 0.5})


@pytest.mark.slow
def test_contrastive_learning_calibrated():
    """Reference §7 setting: 400 steps, batch 128, 4096 pairs, gallery 1024."""
    trunk = TrunkConfig(depth=2, dim=64)
    cfg = ContrastiveConfig(
        vit=ViTConfig(patch=4, trunk=trunk),
        spectrum=SpecFormerConfig(trunk=trunk),
        embed_dim=64,
        head_mlp_ratio=2.0,
    )
    data = dataclasses.replace(GalaxyConfig(), n_train=4096, n_eval=1024)
    res = _train(cfg, data, steps=400, batch=128, lr=2e-3)
    _check(
        res, batch=128, top5_min=0.11, r2_min={"redshift": 0.5, "log_mass": 0.5, "log_ssfr": 0.7}
    )
