# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backbones: attention, Mamba, SSD (Mamba-2) and mixture of experts
#
# Every sequence mixer in jaxfm has one call shape, `mixer(x: (B, L, D), *, mask,
# deterministic, rngs) -> (B, L, D)`, so a config line swaps the trunk of a model
# (`jaxfm.nn.trunk.MIXERS`; Mamba: Gu & Dao 2023, arXiv 2312.00752; SSD: Dao & Gu 2024,
# arXiv 2405.21060; MoE feed-forward with top-k routing and load-balancing loss).
#
# 1. The multi-physics surrogate (an axial ViT) with its time and space mixers set to
#    attention, Mamba or SSD: parameters, step time, loss curves.
# 2. Mixture of experts: the surrogate takes only the *mixer* from the registry, so the MoE
#    feed-forward is shown on the other model built on the shared `Trunk` (the xVal language
#    model): dense MLP vs MoE, and the load of each expert as training goes.
#
# To keep the comparison cheap this notebook trains with a plain jitted step on one device
# (the same `task.loss` the engine uses); the full runs with the engine are
# `experiments/backbone_compare.py` (table in `docs/backbones.md`). `JAXFM_SMOKE=1` (set by
# the test suite) trains each model for a handful of steps only.

# %%
import dataclasses
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import jaxfm

jaxfm.configure_cpu()  # XLA CPU flags for sharded steps; before JAX starts

from jaxfm.config import override
from jaxfm.data.number_tasks import NumberTaskConfig, make_splits
from jaxfm.data.numbers import NUM
from jaxfm.models.xval import XValConfig
from jaxfm.nn.aux import pop_aux
from jaxfm.nn.trunk import AttentionConfig, MoEConfig, TrunkConfig, count_params
from jaxfm.tasks.surrogate import presets
from jaxfm.tasks.surrogate.pipeline import build_data
from jaxfm.tasks.surrogate.task import SurrogateTask
from jaxfm.tasks.xval.task import XValTask

SMOKE = os.environ.get("JAXFM_SMOKE", "0") == "1"
STEPS = 8 if SMOKE else 300
workdir = tempfile.mkdtemp(prefix="jaxfm-backbones-")


def train_briefly(task, batches, steps, lr=1e-3, seed=0):
    """Adam on ``task.loss`` (+ recorded aux losses); per-step loss, aux metrics, step time."""
    model = task.build_model(nnx.Rngs(seed))
    n_params = count_params(model)
    opt = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch, key):
        def loss_fn(m):
            loss, _ = task.loss(m, batch, nnx.Rngs(dropout=key))
            aux_loss, aux = pop_aux(m)  # MoE balance / z-loss and expert-load metrics
            return loss + aux_loss, (loss, aux)

        (_, (loss, aux)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        opt.update(model, grads)
        return loss, aux

    losses, auxes, times = [], [], []
    for i in range(steps):
        t0 = time.perf_counter()
        loss, aux = step(model, opt, batches(i), jax.random.key(i))
        losses.append(float(loss))  # float() waits for the step: honest wall time
        times.append(time.perf_counter() - t0)
        auxes.append(jax.device_get(aux))
    step_s = float(np.median(times[1:]))  # the first call also compiles
    return {
        "params": n_params,
        "loss": losses,
        "aux": auxes,
        "step_s": step_s,
        "compile_s": times[0] - step_s,
    }


# %% [markdown]
# ## 1. The surrogate's trunk: attention vs Mamba vs SSD
# One config change, the AViT's `time_mixer` and `space_mixer` (as
# `python -m experiments.backbone_compare --mixer` does); non-causal state-space mixers run
# bidirectionally (a forward and a backward scan, own weights). The data: the surrogate
# pretraining corpus (four simulated PDE systems, 32x32 in smoke), one system per batch.

# %%
base = presets.pretrain_smoke() if SMOKE else presets.pretrain_tiny()
base = override(base, {"data.cache_dir": os.path.join(workdir, "pde_cache")})
data = build_data(base.data, base.train.batch_size, base.train.seed, workdir)


def surrogate_batch(i):
    """Micro-batch i of the system mixture, stacked (the engine's loader does the same)."""
    b = base.train.batch_size
    items = [data.train[i * b + j] for j in range(b)]
    return {k: jnp.asarray(np.stack([e[k] for e in items])) for k in items[0]}


surrogate_runs = {}
for trunk in ("attention", "mamba", "mamba2"):
    avit = dataclasses.replace(base.model.avit, time_mixer=trunk, space_mixer=trunk)
    task = SurrogateTask(dataclasses.replace(base.model, avit=avit), data.periodic)
    surrogate_runs[trunk] = train_briefly(task, surrogate_batch, STEPS)
    r = surrogate_runs[trunk]
    print(
        f"{trunk:9s} params {r['params']:>7,}  step {1e3 * r['step_s']:7.1f} ms  "
        f"compile ~{r['compile_s']:.1f} s  loss {r['loss'][0]:.4f} -> {r['loss'][-1]:.4f}"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for trunk, r in surrogate_runs.items():
    axes[0].plot(np.arange(1, STEPS + 1), r["loss"], label=trunk)
axes[0].set_xlabel("step")
axes[0].set_ylabel("training loss (NMSE)")
axes[0].set_yscale("log")
axes[0].legend()
names = list(surrogate_runs)
axes[1].bar(names, [1e3 * surrogate_runs[n]["step_s"] for n in names])
for j, n in enumerate(names):
    axes[1].text(
        j,
        0,
        f"{surrogate_runs[n]['params']:,} params",
        ha="center",
        va="bottom",
        fontsize=8,
        color="w",
    )
axes[1].set_ylabel("ms per step (CPU, 1 device)")
fig.tight_layout()
fig.savefig(os.path.join(workdir, "surrogate_trunks.png"))
assert all(np.isfinite(r["loss"]).all() for r in surrogate_runs.values())

# %% [markdown]
# The AViT's axial sequences are short (4 time steps, a few patches per axis): the regime
# where attention is cheapest. State-space mixers pay off at long sequences; see the scaling
# benchmark `python -m jaxfm.nn.bench_mixers --smoke`.
#
# ## 2. Mixture of experts and expert load
# `TrunkConfig(ffn="moe")` keeps the attention mixer and replaces the MLP by `MoE`: a float32
# router picks the top-k of `moe.n_experts` per token; the hidden width is
# `mlp.mlp_ratio / moe.top_k` so active FLOPs match the dense MLP. The router records a
# load-balancing loss (added to the task loss) and the `max_load` / `min_load` of the
# experts (load / balanced load; 1 = even).

# %%
task_cfg = NumberTaskConfig(
    task="arithmetic", n_train=256 if SMOKE else 4096, n_eval=32, max_len=32, operands=2
)
codec, arrays, _ = make_splits(task_cfg)
train_arrays = {k: arrays["train"][k] for k in ("tokens", "values", "loss_mask")}


def lm_batch(i, b=32):
    """Batch i of the xVal arithmetic texts (cycling through the training split)."""
    idx = (np.arange(b) + i * b) % len(train_arrays["tokens"])
    return {k: jnp.asarray(v[idx]) for k, v in train_arrays.items()}


lm_runs = {}
for kind in ("mlp", "moe"):
    trunk = TrunkConfig(
        ffn=kind,
        depth=2,
        dim=32,
        causal=True,
        attention=AttentionConfig(heads=2),
        moe=MoEConfig(n_experts=4, top_k=2),
    )
    cfg = XValConfig(
        vocab_size=codec.vocab_size,
        max_len=task_cfg.max_len,
        trunk=trunk,
        head_hidden=32,
        num_token=NUM,
    )
    lm_runs[kind] = train_briefly(XValTask(cfg), lm_batch, 2 * STEPS, lr=3e-3)
    r = lm_runs[kind]
    print(
        f"{kind:9s} params {r['params']:>7,}  step {1e3 * r['step_s']:6.1f} ms  "
        f"loss {r['loss'][0]:.3f} -> {r['loss'][-1]:.3f}"
    )
print("recorded by the MoE layers:", sorted(lm_runs["moe"]["aux"][-1]))

# %%
aux = lm_runs["moe"]["aux"]
load_keys = sorted(k for k in aux[0] if k.endswith("max_load") or k.endswith("min_load"))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for kind, r in lm_runs.items():
    axes[0].plot(r["loss"], label=kind)
axes[0].set_xlabel("step")
axes[0].set_ylabel("training loss (CE + number MSE)")
axes[0].legend()
for k in load_keys:
    axes[1].plot([float(np.mean(a[k])) for a in aux], label=k.replace("aux/", ""))
axes[1].axhline(1.0, color="gray", ls="--", lw=0.8)
axes[1].set_xlabel("step")
axes[1].set_ylabel("expert load / balanced load")
axes[1].legend(fontsize=7)
fig.tight_layout()
fig.savefig(os.path.join(workdir, "moe_load.png"))
assert load_keys, "the MoE layers should record their expert load"
assert all(np.isfinite(r["loss"]).all() for r in lm_runs.values())
