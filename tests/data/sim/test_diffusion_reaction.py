"""FitzHugh-Nagumo: heat-kernel decay and exact mass with the reaction off, Neumann BCs."""

import jax.numpy as jnp
import numpy as np

from jaxfm.data.sim import diffusion_reaction as dr
from jaxfm.data.sim.stepping import substeps_for


def _decay_error(n, d=1e-2, t_end=2.0):
    dx = 2.0 / n
    x = -1 + (np.arange(n) + 0.5) * dx
    mode = np.cos(np.pi * (x + 1) / 2)[:, None] * np.ones((1, n))  # Neumann eigenmode, m = 1
    s0 = jnp.asarray(np.stack([mode, 0 * mode]), jnp.float32)
    sub, dt = substeps_for(t_end, 0.1 * dx * dx / d)
    out = np.asarray(dr.solve(s0, d, d, 0.0, dx, dt, 2, sub, reaction=False))
    exact = mode * np.exp(-d * (np.pi / 2) ** 2 * t_end)
    return np.abs(out[-1, ..., 0] - exact).max(), out


def test_heat_kernel_decay_and_second_order():
    errs = [_decay_error(n)[0] for n in (16, 32, 64)]
    # Five-point Laplacian: eigenvalue error O(dx²); dt = 0.1 dx²/D keeps the time error below
    # it. Measured max errors 1.5e-4, 3.8e-5, 8.5e-6 (orders 2.00, 2.15).
    assert errs[-1] < 2e-5
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert orders.min() > 1.8, (errs, orders)


def test_no_flux_boundaries_conserve_mass_without_reaction():
    rng = np.random.default_rng(0)
    s0 = jnp.asarray(rng.normal(size=(2, 16, 16)), jnp.float32)
    out = np.asarray(dr.solve(s0, 1e-3, 5e-3, 0.0, 0.125, 0.005, 3, 50, reaction=False), np.float64)
    mass = out.sum(axis=(1, 2))
    np.testing.assert_allclose(mass, mass[:1] * np.ones((3, 1)), atol=1e-4)  # round-off


def test_simulate_records_parameters_and_is_bounded():
    ts = dr.simulate(dr.DiffusionReactionConfig(resolution=16, n_steps=9), 2, seed=0)
    assert ts.field_names == ("activator", "inhibitor") and ts.bc == ("wall", "wall")
    assert set(ts.params) == {"du", "dv", "k"}
    assert np.isfinite(ts.data).all() and np.abs(ts.data[:, -1]).max() < 2.0
