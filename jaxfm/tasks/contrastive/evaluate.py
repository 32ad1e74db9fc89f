"""Full evaluation of a contrastive image/spectrum model: the numbers of its table
(``docs/contrastive.md``).

Design note. One function, :func:`evaluate_contrastive`, turns a model and the (train,
gallery) records into a flat dict: cross-modal and in-modal retrieval top-1/top-5 on the
held-out gallery, cosine k-NN R^2 of each property from each modality (in-modal and
cross-modal), the ridge linear probe and the few-shot MLP (AstroCLIP's n -> 64 -> 64 -> out)
on frozen embeddings. :func:`supervised_baselines` trains the same MLP on raw pixels / raw
spectra (the "supervised" rows of AstroCLIP's table). :func:`results_table` formats the
AstroCLIP-shaped Markdown table. In-modal retrieval needs a second rendering of the gallery
(``jaxfm.data.galaxies.rerender``), so it is reported for generated data only.
"""

from __future__ import annotations

import numpy as np

from jaxfm.data.galaxies import PROPERTY_KEYS, GalaxyConfig, rerender
from jaxfm.tasks.contrastive.probes import mlp_regress, ridge_probe
from jaxfm.tasks.contrastive.retrieval import r2_score, retrieval_report
from jaxfm.tasks.contrastive.task import embed_records

#: properties regressed in the table (PROVABGS analogues: Z_HP, LOG_MSTAR, sSFR).
PROPS = ("redshift", "log_mass", "log_ssfr")


def _probe_r2(tr_x, te_x, train, gallery, props, *, seed: int, epochs: int) -> dict[str, float]:
    ytr = np.stack([train[p] for p in props], 1)
    yte = np.stack([gallery[p] for p in props], 1)
    out = {}
    ridge = ridge_probe(tr_x, ytr, te_x, alpha=1.0)
    mlp = mlp_regress(tr_x, ytr, te_x, epochs=epochs, seed=seed)
    for i, p in enumerate(props):
        out[f"ridge/r2_{p}"] = r2_score(yte[:, i], ridge[:, i])
        out[f"mlp/r2_{p}"] = r2_score(yte[:, i], mlp[:, i])
    return out


def evaluate_contrastive(
    model,
    train: dict[str, np.ndarray],
    gallery: dict[str, np.ndarray],
    data_cfg: GalaxyConfig,
    *,
    k: int = 16,
    probes: bool = True,
    probe_epochs: int = 30,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(flat metrics, gallery embeddings) of ``model`` (a ``ContrastiveModel``).

    Args:
      model: the trained model.
      train: training records (the k-NN reference set and probe training data).
      gallery: held-out records (queries and gallery).
      data_cfg: the generator config (for the second rendering used by in-modal retrieval).
      k: k-NN neighbours.
      probes: also fit the ridge probe and the few-shot MLP on the embeddings.
      probe_epochs: MLP epochs.
      seed: seed of the second rendering and of the MLP.
    """
    props = tuple(p for p in PROPS if p in train and p in gallery)
    emb_tr = embed_records(model, train)
    emb = embed_records(model, gallery)
    if all(p in gallery for p in PROPERTY_KEYS) and data_cfg.path is None:
        second = embed_records(model, rerender(gallery, data_cfg, seed=10_000 + seed))
        emb["image2"], emb["spectrum2"] = second["image"], second["spectrum"]
    out = retrieval_report(
        emb,
        train_emb=emb_tr,
        train_props={p: train[p] for p in props},
        test_props={p: gallery[p] for p in props},
        k=k,
    )
    if probes:
        for mod in ("image", "spectrum"):
            for key, v in _probe_r2(
                emb_tr[mod], emb[mod], train, gallery, props, seed=seed, epochs=probe_epochs
            ).items():
                out[f"probe_{mod}/{key}"] = v
    out["gallery_size"] = float(len(gallery["redshift"]))
    return out, emb


def raw_features(records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw inputs for supervised baselines: flattened images; asinh spectra (flux spans decades)."""
    n = records["image"].shape[0]
    return {
        "image": records["image"].reshape(n, -1),
        "spectrum": np.arcsinh(records["spectrum"].reshape(n, -1)),
    }


def supervised_baselines(
    train: dict[str, np.ndarray], gallery: dict[str, np.ndarray], *, epochs: int = 30, seed: int = 0
) -> dict[str, float]:
    """R^2 of the few-shot MLP trained directly on raw images and raw spectra."""
    props = tuple(p for p in PROPS if p in train)
    ftr, fte = raw_features(train), raw_features(gallery)
    ytr = np.stack([train[p] for p in props], 1)
    out = {}
    for mod in ("image", "spectrum"):
        pred = mlp_regress(ftr[mod], ytr, fte[mod], epochs=epochs, seed=seed)
        for i, p in enumerate(props):
            out[f"supervised_{mod}/r2_{p}"] = r2_score(gallery[p], pred[:, i])
    return out


def results_table(rows: dict[str, dict[str, float]]) -> str:
    """AstroCLIP-shaped Markdown table from {row name: flat metrics}.

    Rows are (input modality, method) pairs; columns are z, M*, sSFR R^2 (k-NN or probe as
    the row says) and retrieval top-1/top-5 where it applies.
    """
    head = (
        "| Input | Method | z R² | log M* R² | log sSFR R² | i→s top-1/5 | s→i top-1/5 |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, m in rows.items():
        mod, method, prefix = name.split("|")
        r2 = [m.get(f"{prefix}/r2_{p}") for p in PROPS]
        cells = ["–" if v is None else f"{v:.3f}" for v in r2]
        ret = ["–", "–"]
        if prefix.startswith("knn_") and "i2s/top1" in m:
            ret = [
                f"{m['i2s/top1']:.3f}/{m['i2s/top5']:.3f}",
                f"{m['s2i/top1']:.3f}/{m['s2i/top5']:.3f}",
            ]
        lines.append(f"| {mod} | {method} | " + " | ".join(cells + ret) + " |")
    return head + "\n".join(lines) + "\n"
