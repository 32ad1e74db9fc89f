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
# # Cross-modal retrieval with an AstroCLIP-style model
#
# Two views of the same galaxy, a 3-band image and a spectrum, are embedded into one space
# (Parker et al. 2024, arXiv 2310.03024). Once aligned, a spectrum can find its galaxy's image
# and either modality predicts physical properties by nearest neighbours.
#
# Steps: generate synthetic paired galaxies, train the two towers with InfoNCE through the
# jaxfm engine, then search images with spectra (and back) on a held-out gallery and compare
# with a random-initialised model. `JAXFM_SMOKE=1` (set by the test suite) shrinks everything.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import experiments.contrastive_train as ct
from jaxfm.config import override
from jaxfm.data.galaxies import make_sources, wavelengths
from jaxfm.train import load_model, run
from jaxfm.train.contrastive_task import ContrastiveTask, embed_records
from jaxfm.train.retrieval import cosine_similarity, knn_r2, topk_accuracy

SMOKE = os.environ.get("JAXFM_SMOKE", "0") == "1"

# %% [markdown]
# ## 1. Paired synthetic galaxies
# Shared latent parameters (redshift, stellar mass, sSFR, Sérsic morphology) drive both the
# image (size, brightness, colour) and the spectrum (line positions, break, emission lines).

# %%
cfg = ct.smoke() if SMOKE else ct.default()
cfg = override(
    cfg,
    {
        "workdir": tempfile.mkdtemp(prefix="jaxfm-retrieval-"),
        "train.steps": 20 if SMOKE else 400,
        "train.progress": "false",
    },
)
train_src, gallery_src = make_sources(cfg.data)
train, gallery = train_src.records, gallery_src.records
fig, axes = plt.subplots(2, 4, figsize=(10, 4))
for i in range(4):
    axes[0, i].imshow(np.clip(gallery["image"][i][..., ::-1], 0, 1))
    axes[0, i].set_title(f"z = {gallery['redshift'][i]:.2f}")
    axes[1, i].plot(wavelengths(gallery["spectrum"].shape[1]), gallery["spectrum"][i, :, 0], lw=0.6)
plt.tight_layout()

# %% [markdown]
# ## 2. Train the two towers
# ViT for images, SpecFormer for spectra, learned-query cross-attention heads, symmetric
# InfoNCE on the global batch. The engine writes metrics and checkpoints to the workdir.

# %%
task = ContrastiveTask(cfg.model)
results = run(cfg, task, train_src, gallery_src)
print({k: round(v, 3) for k, v in results.items() if k.startswith(("eval/", "train/loss"))})
model = load_model(cfg.workdir, task, cfg)
control = task.build_model(nnx.Rngs(123))

# %% [markdown]
# ## 3. Retrieval on the held-out gallery
# Query i's correct answer is gallery item i; chance top-k is k/N.

# %%
emb, emb0 = embed_records(model, gallery), embed_records(control, gallery)
n = len(gallery["redshift"])
for name, e in (("trained", emb), ("random init", emb0)):
    print(
        f"{name:12s} image->spectrum {topk_accuracy(e['image'], e['spectrum'])}  "
        f"spectrum->image {topk_accuracy(e['spectrum'], e['image'])}  (chance top-5 {5 / n:.3f})"
    )

# %% [markdown]
# ## 4. A spectrum searches for its galaxy
# The query spectrum (left) and the five most similar images; the true match is outlined.

# %%
q = 0
sim = cosine_similarity(emb["spectrum"][q : q + 1], emb["image"])[0]
top = np.argsort(-sim)[:5]
fig, axes = plt.subplots(1, 6, figsize=(13, 2.4))
axes[0].plot(gallery["spectrum"][q, :, 0], lw=0.6)
axes[0].set_title(f"query z={gallery['redshift'][q]:.2f}")
for ax, j in zip(axes[1:], top):
    ax.imshow(np.clip(gallery["image"][j][..., ::-1], 0, 1))
    ax.set_title(f"z={gallery['redshift'][j]:.2f}" + (" (match)" if j == q else ""))
    if j == q:
        for side in ax.spines.values():
            side.set_color("green")
            side.set_linewidth(3)
plt.tight_layout()

# %% [markdown]
# ## 5. Properties from neighbours
# Cosine k-NN regression: an image's neighbours among the *spectrum* embeddings of the
# training set predict its redshift, mass and sSFR (cross-modal zero-shot).

# %%
emb_tr, emb_tr0 = embed_records(model, train), embed_records(control, train)
props = ("redshift", "log_mass", "log_ssfr")
for name, e, et in (("trained", emb, emb_tr), ("random init", emb0, emb_tr0)):
    r2 = knn_r2(
        et["spectrum"],
        {p: train[p] for p in props},
        e["image"],
        {p: gallery[p] for p in props},
        k=16,
    )
    print(name, {p: round(v, 3) for p, v in r2.items()})
