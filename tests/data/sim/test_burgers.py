"""1-D Burgers: convergence to the characteristic solution before the shock, mass."""

import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from jaxfm.data.sim import burgers
from jaxfm.data.sim.stepping import substeps_for

A, T = 0.5, 0.2  # u0 = A sin(2πx); the shock forms at t* = 1/(2πA) ≈ 0.32 > T.


def _cell_avg(fn, n):
    """Cell averages by 6-point Gauss-Legendre quadrature."""
    dx = 1.0 / n
    g, w = np.polynomial.legendre.leggauss(6)
    xs = ((np.arange(n) + 0.5)[:, None] * dx + g[None] * dx / 2).ravel()
    return fn(xs).reshape(n, 6) @ w / 2


def _exact(xs, t):
    # u = u0(x - u t): solve the implicit equation pointwise (unique root before the shock).
    def root(x):
        return brentq(lambda u: u - A * np.sin(2 * np.pi * (x - u * t)), -1, 1)

    return np.array([root(x) for x in xs])


def test_inviscid_convergence_to_characteristics():
    errs = []
    for n in (32, 64, 128):
        dx = 1.0 / n
        u0 = _cell_avg(lambda x: A * np.sin(2 * np.pi * x), n)
        ue = _cell_avg(lambda x: _exact(x, T), n)
        sub, dt = substeps_for(T, 0.4 * dx / A)
        out = burgers.solve(jnp.asarray(u0, jnp.float32), 0.0, dx, dt, 2, sub, "mc")
        errs.append(np.abs(np.asarray(out[-1], np.float64) - ue).mean())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    # Measured 1.99, 1.98 (second-order MUSCL-mc); 1.8 leaves margin for round-off.
    assert orders.min() > 1.8, (errs, orders)


def test_simulate_conserves_mass():
    ts = burgers.simulate(burgers.BurgersConfig(resolution=32, n_steps=9), 3, seed=0)
    mass = ts.data.astype(np.float64).sum(axis=(2, 3))
    # Periodic flux form: Σu changes only by float32 round-off (measured < 1e-6).
    np.testing.assert_allclose(mass, mass[:, :1] * np.ones((1, 9)), atol=1e-4)
    assert np.abs(ts.data[:, 0]).max() <= 0.5 + 1e-6
    # Viscous Burgers: max|u| never grows (maximum principle).
    peak = np.abs(ts.data).max(axis=(2, 3))
    assert (peak <= peak[:, :1] + 1e-5).all()
