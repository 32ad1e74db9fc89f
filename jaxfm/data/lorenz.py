"""A built-in dataset that needs no download: one-step maps of the Lorenz-63 system.

dx/dt = sigma (y - x),  dy/dt = x (rho - z) - y,  dz/dt = x y - beta z
with the classic chaotic parameters (sigma, rho, beta) = (10, 28, 8/3). Trajectories are
integrated with RK4 (internal step dt/substeps) from random starts after a burn-in onto the
attractor; examples are pairs (state_t, state_{t+dt}) standardised with the training split's
mean and std. Learning the flow map is a small, honest regression task for the quickstart
and for engine tests: the identity map (persistence) is a clear baseline to beat.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


def _rhs(s: np.ndarray) -> np.ndarray:
    x, y, z = s[..., 0], s[..., 1], s[..., 2]
    return np.stack([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z], axis=-1)


def _rk4(s: np.ndarray, h: float) -> np.ndarray:
    k1 = _rhs(s)
    k2 = _rhs(s + 0.5 * h * k1)
    k3 = _rhs(s + 0.5 * h * k2)
    k4 = _rhs(s + h * k3)
    return s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def trajectories(
    n_traj: int,
    n_steps: int,
    *,
    dt: float = 0.02,
    substeps: int = 4,
    burn_in: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """float64 states (n_traj, n_steps, 3) on the attractor, sampled every ``dt``."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 5.0, (n_traj, 3)) + np.array([0.0, 0.0, 25.0])
    h = dt / substeps
    for _ in range(burn_in * substeps):
        s = _rk4(s, h)
    out = np.empty((n_traj, n_steps, 3))
    for t in range(n_steps):
        out[:, t] = s
        for _ in range(substeps):
            s = _rk4(s, h)
    return out


@dataclasses.dataclass(frozen=True)
class LorenzConfig:
    """Lorenz-63 flow-map pairs (the ``data`` section of the quickstart and distillation)."""

    n_train: int = 64
    """Training trajectories."""
    n_eval: int = 16
    """Held-out trajectories."""
    n_steps: int = 64
    """Pairs per trajectory."""
    dt: float = 0.02
    """Time between input and target."""


def flow_map_splits(
    n_train: int = 64, n_eval: int = 16, n_steps: int = 64, *, dt: float = 0.02, seed: int = 0
) -> tuple[dict, dict, dict]:
    """(train, eval, stats): dicts of float32 ``x``/``y`` (N, 3) pairs, standardised.

    ``stats`` holds the training mean/std used for both splits, so evaluation never peeks.
    """
    traj = trajectories(n_train + n_eval, n_steps + 1, dt=dt, seed=seed)
    train, test = traj[:n_train], traj[n_train:]
    mean, std = train.reshape(-1, 3).mean(0), train.reshape(-1, 3).std(0)

    def pairs(t):
        x = (t[:, :-1] - mean) / std
        y = (t[:, 1:] - mean) / std
        return {"x": x.reshape(-1, 3).astype(np.float32), "y": y.reshape(-1, 3).astype(np.float32)}

    return pairs(train), pairs(test), {"mean": mean.tolist(), "std": std.tolist(), "dt": dt}
