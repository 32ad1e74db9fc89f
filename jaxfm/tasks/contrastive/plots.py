"""Plots of a contrastive image/spectrum model: retrieval galleries and a 2D embedding map.

* :func:`plot_retrieval_gallery`: for a few image queries, the query image and the top-k
  retrieved spectra (correct match in green), and for spectrum queries the top-k images.
* :func:`plot_embedding_map`: the first two principal components of the normalised image and
  spectrum embeddings, coloured by redshift (a smooth colour gradient is the visual check that
  the shared space orders galaxies by a physical property).
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np

from jaxfm.data.galaxies import wavelengths
from jaxfm.tasks.contrastive.retrieval import cosine_similarity, normalize


def _rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) g, r, z stretched image -> displayable RGB (z as red, g as blue)."""
    x = img[..., ::-1]
    lo, hi = np.percentile(x, 1), np.percentile(x, 99.5)
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)


def plot_retrieval_gallery(
    path: str,
    gallery: dict[str, np.ndarray],
    emb: dict[str, np.ndarray],
    *,
    n_queries: int = 4,
    k: int = 4,
    seed: int = 0,
) -> str:
    """Saves image->spectrum and spectrum->image top-k panels to ``path``; returns it."""
    rng = np.random.default_rng(seed)
    q_idx = rng.choice(len(gallery["redshift"]), n_queries, replace=False)
    wave = wavelengths(gallery["spectrum"].shape[1])
    fig, axes = plt.subplots(2 * n_queries, k + 1, figsize=(2.2 * (k + 1), 2.0 * 2 * n_queries))
    for row, (q_mod, g_mod) in enumerate((("image", "spectrum"), ("spectrum", "image"))):
        sim = cosine_similarity(emb[q_mod][q_idx], emb[g_mod])
        for j, qi in enumerate(q_idx):
            r = row * n_queries + j
            ax = axes[r, 0]
            if q_mod == "image":
                ax.imshow(_rgb(gallery["image"][qi]))
            else:
                ax.plot(wave, gallery["spectrum"][qi, :, 0], lw=0.6, color="k")
            ax.set_title(f"query {q_mod}\nz={gallery['redshift'][qi]:.2f}", fontsize=7)
            for c, gi in enumerate(np.argsort(-sim[j])[:k]):
                ax = axes[r, c + 1]
                colour = "green" if gi == qi else "gray"
                if g_mod == "image":
                    ax.imshow(_rgb(gallery["image"][gi]))
                else:
                    ax.plot(wave, gallery["spectrum"][gi, :, 0], lw=0.6, color=colour)
                ax.set_title(f"#{c + 1} z={gallery['redshift'][gi]:.2f}", fontsize=7, color=colour)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_embedding_map(path: str, emb: dict[str, np.ndarray], redshift: np.ndarray) -> str:
    """Saves a PCA map of image and spectrum embeddings coloured by redshift to ``path``."""
    both = np.concatenate([normalize(emb["image"]), normalize(emb["spectrum"])])
    centred = both - both.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    n = len(redshift)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    for ax, (name, pts) in zip(axes, (("image", xy[:n]), ("spectrum", xy[n:]))):
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=redshift, s=4, cmap="viridis")
        ax.set_title(f"{name} embeddings (PCA)")
    fig.colorbar(sc, ax=axes, label="redshift")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_plots(
    workdir: str, gallery: dict[str, np.ndarray], emb: dict[str, np.ndarray]
) -> list[str]:
    """Both plots into ``workdir``; returns their paths."""
    return [
        plot_retrieval_gallery(os.path.join(workdir, "retrieval_gallery.png"), gallery, emb),
        plot_embedding_map(os.path.join(workdir, "embedding_pca.png"), emb, gallery["redshift"]),
    ]
