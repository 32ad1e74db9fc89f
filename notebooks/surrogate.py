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
# # Multi-physics surrogate: pretrain, roll out on an unseen system, fine-tune
#
# Multiple Physics Pretraining (McCabe et al. 2023, arXiv 2310.02994) trains one axial
# vision transformer (AViT) on several PDE systems at once: every physical field gets its own
# learned embedding, so systems with different fields share one model. The pretrained model is
# then fine-tuned on a system it has never seen (here compressible Euler flow at Mach 1).
#
# Steps: simulate a small corpus (`jaxfm.data.sim`), pretrain a tiny AViT in the notebook
# (our stand-in for "load a pretrained model"), roll it out autoregressively on held-out
# trajectories of the unseen system, plot truth / prediction / error over time, fine-tune a
# few steps and compare against the zero-shot rollout and the persistence baseline.
#
# `JAXFM_SMOKE=1` (set by the test suite) uses 32x32 grids, a 1-block model and 20 steps: the
# models are then barely trained, so read the smoke numbers as a check that the pipeline runs.

# %%
import os
import tempfile

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxfm

jaxfm.configure_cpu()  # XLA CPU flags for sharded steps; before JAX starts

from jaxfm.config import override
from jaxfm.tasks.surrogate import presets
from jaxfm.tasks.surrogate.pipeline import build_data, rollout_predictions
from jaxfm.tasks.surrogate.rollout import per_step_errors
from jaxfm.tasks.surrogate.task import SurrogateTask
from jaxfm.train import load_model, run
from jaxfm.train.plots import read_metrics

SMOKE = os.environ.get("JAXFM_SMOKE", "0") == "1"
root = tempfile.mkdtemp(prefix="jaxfm-surrogate-")
cache = os.path.join(root, "pde_cache")  # simulated trajectories (Well-layout HDF5)

# %% [markdown]
# ## 1. A small multi-physics corpus
# Four systems (shallow water, diffusion-reaction, incompressible Navier-Stokes, Gray-Scott),
# simulated once and cached as HDF5 in The Well's layout; each split by trajectory into
# training and held-out sets and cut into windows of `n_steps_input` frames -> the next one.

# %%
pre = presets.pretrain_smoke() if SMOKE else presets.pretrain_tiny()
pre = override(
    pre,
    {
        "workdir": os.path.join(root, "pretrain"),
        "data.cache_dir": cache,
        "train.steps": 20 if SMOKE else 3000,
        "train.progress": "false",
    },
)
pre_data = build_data(pre.data, pre.train.batch_size, pre.train.seed, pre.workdir)
# held-out trajectories are read from disk on demand; the smoke sets are small: load them
held_out = {name: trajs.load() for name, trajs in pre_data.held_out.items()}
for name, ts in held_out.items():
    print(f"{name:20s} held-out {ts.data.shape} fields {ts.field_names} bc {ts.bc}")

fig, axes = plt.subplots(1, len(held_out), figsize=(3 * len(held_out), 3))
for ax, (name, ts) in zip(np.atleast_1d(axes), held_out.items()):
    ax.imshow(ts.data[0, -1, ..., 0], cmap="viridis")
    ax.set_title(f"{name}\n{ts.field_names[0]}", fontsize=9)
    ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(root, "corpus.png"))

# %% [markdown]
# ## 2. Pretrain (the "pretrained" tiny surrogate)
# One system per micro-batch, uniform over systems; normalised-MSE loss (MPP's). The engine
# evaluates one-step NRMSE on held-out windows against persistence (predict no change).

# %%
pre_task = SurrogateTask(pre.model, pre_data.periodic)
pre_results = run(pre, pre_task, pre_data.train, pre_data.eval)
print({k: round(v, 4) for k, v in pre_results.items() if k.startswith("eval/")})
records = [r for r in read_metrics(pre.workdir) if "loss" in r]
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy([r["step"] for r in records], [r["loss"] for r in records])
ax.set_xlabel("step")
ax.set_ylabel("pretraining loss (NMSE)")
fig.savefig(os.path.join(root, "pretrain_loss.png"))

# %% [markdown]
# ## 3. Zero-shot rollout on an unseen system
# Compressible Euler at Mach 1 has fields (density, pressure, ...) the model has partly never
# seen. Starting from the first `n_steps_input` true frames, the model predicts the next frame,
# appends it to its window and repeats (`jaxfm.tasks.surrogate.rollout`, one `lax.scan`).

# %%
ft = presets.finetune_smoke() if SMOKE else presets.finetune_m1()
ft = override(
    ft,
    {
        "workdir": os.path.join(root, "finetune"),
        "data.cache_dir": cache,
        "init_from": pre.workdir,
        "train.steps": 20 if SMOKE else 600,
        "train.progress": "false",
    },
)
if SMOKE:  # 2 held-out trajectories: 12 eval windows, enough for the 8 data-parallel shards
    ft = override(ft, {"data.n_eval": 2})
ft_data = build_data(ft.data, ft.train.batch_size, ft.train.seed, ft.workdir)
system = ft.data.systems[0]
ts = ft_data.held_out[system].load()
ft_task = SurrogateTask(ft.model, ft_data.periodic)
pretrained = load_model(pre.workdir, ft_task, pre)

n_in = ft.data.n_steps_input
steps = ts.data.shape[1] - n_in
traj = ts.data.astype(np.float32)
ids = ft_data.fields.ids(ts.field_names)
periodic = ft_data.periodic[ft_data.systems.id(system)]
truth = traj[:, n_in : n_in + steps]
pred_zero_shot = rollout_predictions(pretrained, traj, ids, periodic, n_in, steps)
print(system, "fields", ts.field_names, "| rollout", pred_zero_shot.shape)


def show_rollout(pred, title, path, field=0):
    """Rows truth / prediction / |error| of one field of trajectory 0 over the rollout."""
    cols = sorted(set(np.linspace(0, steps - 1, min(5, steps)).round().astype(int)))
    lo, hi = truth[0, ..., field].min(), truth[0, ..., field].max()
    err = np.abs(pred[0, ..., field] - truth[0, ..., field])
    fig, axes = plt.subplots(3, len(cols), figsize=(2.2 * len(cols), 6.4), squeeze=False)
    for j, t in enumerate(cols):
        axes[0, j].imshow(truth[0, t, ..., field], vmin=lo, vmax=hi)
        axes[1, j].imshow(pred[0, t, ..., field], vmin=lo, vmax=hi)
        axes[2, j].imshow(err[t], vmin=0, vmax=err.max() or 1.0, cmap="magma")
        axes[0, j].set_title(f"step {t + 1}")
    for i, label in enumerate(("truth", "prediction", "|error|")):
        axes[i, 0].set_ylabel(label)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}: {ts.field_names[field]}")
    fig.tight_layout()
    fig.savefig(path)


show_rollout(pred_zero_shot, f"{system}, zero-shot", os.path.join(root, "rollout_zero_shot.png"))

# %% [markdown]
# ## 4. Fine-tune a few steps and compare
# `init_from` loads the pretrained parameters (optimizer and step start fresh). Then the same
# rollout again, and the per-step NRMSE of zero-shot, fine-tuned and persistence (predict the
# last input frame forever), averaged over held-out trajectories and fields.

# %%
ft_results = run(ft, ft_task, ft_data.train, ft_data.eval)
finetuned = load_model(ft.workdir, ft_task, ft)
pred_finetuned = rollout_predictions(finetuned, traj, ids, periodic, n_in, steps)
show_rollout(pred_finetuned, f"{system}, fine-tuned", os.path.join(root, "rollout_finetuned.png"))

persistence = np.repeat(traj[:, n_in - 1 : n_in], steps, axis=1)  # last input frame, held
curves = {
    label: per_step_errors(jnp.asarray(p), jnp.asarray(truth), ("nrmse",))["nrmse"].mean(
        axis=(0, 2)
    )  # (B, S, C) -> per step, averaged over trajectories and fields
    for label, p in (
        ("zero-shot", pred_zero_shot),
        ("fine-tuned", pred_finetuned),
        ("persistence", persistence),
    )
}
fig, ax = plt.subplots(figsize=(5.5, 3.5))
for label, c in curves.items():
    ax.plot(
        np.arange(1, len(c) + 1),
        c,
        marker="o",
        label=label,
        ls="--" if label == "persistence" else "-",
    )
ax.set_xlabel("rollout step")
ax.set_ylabel("NRMSE")
ax.set_title(system)
ax.legend()
fig.savefig(os.path.join(root, "error_vs_step.png"))
for label, c in curves.items():
    print(f"{label:12s} NRMSE per step:", " ".join(f"{x:.3f}" for x in c))
assert all(np.isfinite(c).all() for c in curves.values())

# %% [markdown]
# With the full budget (`JAXFM_SMOKE=0`: the `tiny` preset, 3000 pretraining and 600
# fine-tuning steps at 64x64) the fine-tuned model beats persistence over the first steps;
# the measured transfer study is in `docs/surrogate.md`.
