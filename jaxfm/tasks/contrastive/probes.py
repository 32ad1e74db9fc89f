"""Supervised read-outs of frozen embeddings: ridge linear probe and a small MLP regressor.

Design note. AstroCLIP's "few-shot" evaluation (Parker et al. 2024, §5) trains an MLP
n -> 64 -> 64 -> out (GELU, dropout 0.1, Adam 1e-3) on frozen embeddings to predict
standardised physical properties; the linear probe is the closed-form ridge regression
baseline. Both standardise inputs and targets with training statistics and return
predictions in target units. The same MLP trained on raw inputs (flattened images/spectra or
simple summaries) is the supervised baseline of the results table.
"""

from __future__ import annotations

import numpy as np
import optax
from flax import nnx

from jaxfm.nn.mlp import dense


def _standardize(train: np.ndarray, *others: np.ndarray):
    mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-8
    return ((train - mu) / sd, *[(o - mu) / sd for o in others]), (mu, sd)


def ridge_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, alpha: float = 1.0
) -> np.ndarray:
    """Closed-form ridge regression (float64) of standardised targets; (m, t) predictions."""
    (xtr, xte), _ = _standardize(np.asarray(train_x, np.float64), np.asarray(test_x, np.float64))
    (ytr,), (ymu, ysd) = _standardize(np.asarray(train_y, np.float64).reshape(len(train_y), -1))
    xtr1 = np.concatenate([xtr, np.ones((len(xtr), 1))], axis=1)
    xte1 = np.concatenate([xte, np.ones((len(xte), 1))], axis=1)
    reg = alpha * np.eye(xtr1.shape[1])
    reg[-1, -1] = 0.0  # do not shrink the intercept
    w = np.linalg.solve(xtr1.T @ xtr1 + reg, xtr1.T @ ytr)
    return (xte1 @ w) * ysd + ymu


class _Regressor(nnx.Module):
    def __init__(self, din: int, dout: int, hidden: int, dropout: float, rngs: nnx.Rngs):
        self.l1 = dense(din, hidden, (None, None), rngs)
        self.l2 = dense(hidden, hidden, (None, None), rngs)
        self.l3 = dense(hidden, dout, (None, None), rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x, *, deterministic: bool):
        x = self.drop(nnx.gelu(self.l1(x)), deterministic=deterministic)
        x = self.drop(nnx.gelu(self.l2(x)), deterministic=deterministic)
        return self.l3(x)


def mlp_regress(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    *,
    hidden: int = 64,
    dropout: float = 0.1,
    lr: float = 1e-3,
    epochs: int = 30,
    batch_size: int = 128,
    seed: int = 0,
) -> np.ndarray:
    """Trains the AstroCLIP few-shot MLP on (train_x, train_y); returns test predictions.

    Args:
      train_x: (n, d) features; train_y: (n,) or (n, t) targets; test_x: (m, d).
      hidden, dropout, lr, epochs, batch_size, seed: the regressor and its Adam schedule.
    """
    (xtr, xte), _ = _standardize(np.asarray(train_x, np.float32), np.asarray(test_x, np.float32))
    (ytr,), (ymu, ysd) = _standardize(np.asarray(train_y, np.float32).reshape(len(train_y), -1))
    model = _Regressor(xtr.shape[1], ytr.shape[1], hidden, dropout, nnx.Rngs(seed))
    opt = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(m):
            return ((m(x, deterministic=False) - y) ** 2).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    n = len(xtr)
    bs = min(batch_size, n)
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s in range(0, n - bs + 1, bs):
            idx = perm[s : s + bs]
            step(model, opt, xtr[idx], ytr[idx].astype(np.float32))
    pred = nnx.jit(lambda m, x: m(x, deterministic=True))(model, xte.astype(np.float32))
    return np.asarray(pred, np.float64) * ysd + ymu
