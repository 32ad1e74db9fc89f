"""Retrieval, k-NN regression and probes against hand-made embeddings with known answers."""

import numpy as np
import pytest

from jaxfm.tasks.contrastive.probes import mlp_regress, ridge_probe
from jaxfm.tasks.contrastive.retrieval import (
    knn_r2,
    knn_regress,
    r2_score,
    retrieval_ranks,
    retrieval_report,
    topk_accuracy,
)


def test_identical_embeddings_retrieve_perfectly():
    x = np.random.default_rng(0).normal(size=(200, 16))
    acc = topk_accuracy(x, 3 * x)
    assert acc["top1"] == 1.0 and acc["top5"] == 1.0 and acc["median_rank"] == 0


def test_random_embeddings_score_chance():
    rng = np.random.default_rng(1)
    n, trials = 256, 20
    top5 = np.mean(
        [
            topk_accuracy(rng.normal(size=(n, 32)), rng.normal(size=(n, 32)))["top5"]
            for _ in range(trials)
        ]
    )
    # chance 5/256 = 0.0195; std of the mean over 5120 Bernoulli draws ~ 0.002
    assert abs(top5 - 5 / n) < 0.008


def test_ties_count_against_the_query():
    const = np.ones((10, 4))
    assert topk_accuracy(const, const)["top1"] == 0.0
    assert (retrieval_ranks(const, const) == 9).all()


def test_rank_matches_brute_force():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    sim = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        g / np.linalg.norm(g, axis=1, keepdims=True)
    ).T
    expected = [sum(sim[i, j] >= sim[i, i] for j in range(30) if j != i) for i in range(30)]
    np.testing.assert_array_equal(retrieval_ranks(q, g), expected)


def test_knn_regression_recovers_targets():
    rng = np.random.default_rng(3)
    # embeddings on the unit circle whose angle is the target: cosine neighbours are exact
    ang_tr, ang_te = rng.uniform(0, np.pi / 2, 2000), rng.uniform(0.1, np.pi / 2 - 0.1, 300)
    emb = lambda a: np.stack([np.cos(a), np.sin(a)], 1)
    pred = knn_regress(emb(ang_tr), ang_tr, emb(ang_te), k=8)
    assert r2_score(ang_te, pred) > 0.999
    # random embeddings: R^2 <= ~0
    r2 = knn_r2(
        rng.normal(size=(2000, 8)), {"z": ang_tr}, rng.normal(size=(300, 8)), {"z": ang_te}, k=16
    )
    assert r2["z"] < 0.05
    # leave-one-out does not use the query itself
    x = rng.normal(size=(50, 4))
    y = np.arange(50.0)
    assert not np.allclose(knn_regress(x, y, x, k=1, exclude_self=True), y)
    np.testing.assert_allclose(knn_regress(x, y, x, k=1), y)
    with pytest.raises(ValueError, match="k=0"):
        knn_regress(x, y, x, k=0)


def test_r2_reference():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, 2.5)) == 0.0
    np.testing.assert_allclose(r2_score(y, y + 1), 1 - 4 / 5)


def test_report_keys():
    rng = np.random.default_rng(4)
    e = {k: rng.normal(size=(40, 6)) for k in ("image", "spectrum", "image2", "spectrum2")}
    props = {"redshift": rng.normal(size=40)}
    rep = retrieval_report(e, train_emb=e, train_props=props, test_props=props, k=4)
    for key in (
        "i2s/top1",
        "s2i/top5",
        "i2i/top1",
        "s2s/top5",
        "knn_i2s/r2_redshift",
        "knn_s2i/r2_redshift",
        "knn_i2i/r2_redshift",
    ):
        assert key in rep


def test_probes_fit_a_known_function():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1200, 6))
    y = np.stack([x @ np.arange(1.0, 7.0), np.sin(2 * x[:, 0]) + x[:, 1] ** 2], 1)
    ridge = ridge_probe(x[:1000], y[:1000], x[1000:], alpha=1e-3)
    np.testing.assert_allclose(ridge[:, 0], y[1000:, 0], atol=1e-3)  # linear target: exact
    mlp = mlp_regress(x[:1000], y[:1000], x[1000:], epochs=40, dropout=0.0)
    # the nonlinear target: the MLP must beat the linear probe clearly
    assert r2_score(y[1000:, 1], mlp[:, 1]) > 0.8 > r2_score(y[1000:, 1], ridge[:, 1]) + 0.3
