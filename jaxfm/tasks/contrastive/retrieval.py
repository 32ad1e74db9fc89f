"""Embedding evaluation: retrieval top-k, cosine k-NN regression, R^2.

Design note. All functions take host NumPy embeddings (computed once for a held-out gallery)
and run in float64, so evaluation numbers do not depend on the training precision.

* Retrieval (``topk_accuracy``): query i's correct item is gallery i. Its rank is the number of
  gallery items *at least as similar* as the correct one, itself excluded, so ties count
  against the model and a constant embedding scores chance, not 1. Cross-modal: images query
  spectra and back. In-modal: queries and gallery are two independent noisy renderings of the
  same galaxies (see ``jaxfm.data.galaxies.render``), so in-modal retrieval has a ground truth
  too.
* k-NN regression (``knn_regress``): neighbours by cosine similarity of L2-normalised
  embeddings, the prediction the mean target of the k nearest training items. Cosine, not
  StandardScaler + Euclidean as in AstroCLIP's zero-shot code: for cross-modal k-NN (image query
  against spectrum training embeddings) the modality gap makes Euclidean neighbours
  meaningless (R^2 < 0 in our calibration runs).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float


def normalize(x: Float[np.ndarray, "n e"]) -> Float[np.ndarray, "n e"]:
    """Rows scaled to unit L2 norm (float64; zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_similarity(q: Float[np.ndarray, "n e"], g: Float[np.ndarray, "m e"]) -> np.ndarray:
    """(n, m) cosine similarities."""
    return normalize(q) @ normalize(g).T


def retrieval_ranks(q: Float[np.ndarray, "n e"], g: Float[np.ndarray, "n e"]) -> np.ndarray:
    """Rank (0 = best) of gallery item i for query i; ties count against the query."""
    if q.shape[0] != g.shape[0]:
        raise ValueError(f"queries ({q.shape[0]}) and gallery ({g.shape[0]}) must be paired")
    sim = cosine_similarity(q, g)
    pos = np.diagonal(sim)[:, None]
    at_least = sim >= pos
    np.fill_diagonal(at_least, False)
    return at_least.sum(axis=1)


def topk_accuracy(q: np.ndarray, g: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """{"top1": ..., "top5": ...}: fraction of queries whose partner ranks within k."""
    ranks = retrieval_ranks(q, g)
    out = {f"top{k}": float(np.mean(ranks < k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    return out


def knn_regress(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    *,
    k: int = 16,
    exclude_self: bool = False,
    chunk: int = 2048,
) -> np.ndarray:
    """Mean target of the k cosine-nearest training embeddings of each test embedding.

    Args:
      train_x: (n, e) training embeddings; train_y: (n,) or (n, t) targets.
      test_x: (m, e) query embeddings (any modality with the same width).
      k: neighbours.
      exclude_self: drop neighbour j == i (leave-one-out when test_x is train_x).
      chunk: queries per block (bounds memory at chunk * n similarities).
    Returns:
      (m,) or (m, t) predictions.
    """
    if k < 1 or k > train_x.shape[0] - int(exclude_self):
        raise ValueError(f"k={k} must be in [1, {train_x.shape[0] - int(exclude_self)}]")
    tr = normalize(train_x)
    y = np.asarray(train_y, np.float64)
    preds = []
    for s in range(0, test_x.shape[0], chunk):
        sim = normalize(test_x[s : s + chunk]) @ tr.T
        if exclude_self:
            idx = np.arange(s, s + sim.shape[0])
            sim[np.arange(sim.shape[0]), idx] = -np.inf
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        preds.append(y[nn].mean(axis=1))
    return np.concatenate(preds)


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (can be negative)."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    ss_tot = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - pred) ** 2) / max(ss_tot, 1e-300))


def knn_r2(
    train_x: np.ndarray,
    train_props: dict[str, np.ndarray],
    test_x: np.ndarray,
    test_props: dict[str, np.ndarray],
    *,
    k: int = 16,
) -> dict[str, float]:
    """R^2 of cosine k-NN regression for every property, {name: R^2}."""
    names = list(test_props)
    ys = np.stack([train_props[n] for n in names], axis=1)
    pred = knn_regress(train_x, ys, test_x, k=k)
    return {n: r2_score(test_props[n], pred[:, i]) for i, n in enumerate(names)}


def retrieval_report(
    emb: dict[str, np.ndarray],
    *,
    train_emb: dict[str, np.ndarray],
    train_props: dict[str, np.ndarray],
    test_props: dict[str, np.ndarray],
    k: int = 16,
) -> dict[str, float]:
    """Every retrieval and k-NN number of the Evaluation section, flat {name: value}.

    Args:
      emb: held-out embeddings ``image``, ``spectrum`` and optionally ``image2``/``spectrum2``
        (a second rendering of the same galaxies, for in-modal retrieval).
      train_emb: training embeddings ``image`` and ``spectrum`` (the k-NN reference set).
      train_props, test_props: properties to regress, e.g. redshift, log_mass, log_ssfr.
      k: k-NN neighbours.
    """
    out: dict[str, float] = {}
    for name, (q, g) in {
        "i2s": ("image", "spectrum"),
        "s2i": ("spectrum", "image"),
        "i2i": ("image", "image2"),
        "s2s": ("spectrum", "spectrum2"),
    }.items():
        if q in emb and g in emb:
            for m, v in topk_accuracy(emb[q], emb[g]).items():
                out[f"{name}/{m}"] = v
    for src in ("image", "spectrum"):  # reference set modality
        for qry in ("image", "spectrum"):  # query modality
            tag = f"knn_{qry[0]}2{src[0]}"
            for p, v in knn_r2(train_emb[src], train_props, emb[qry], test_props, k=k).items():
                out[f"{tag}/r2_{p}"] = v
    return out
