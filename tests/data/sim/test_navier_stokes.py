"""Incompressible NS: Taylor-Green decay, tracer conservation, incompressibility, energy."""

import jax.numpy as jnp
import numpy as np

from jaxfm.data.sim import navier_stokes as ns


def test_taylor_green_decay_rate():
    n, nu, dt, sub = 32, 0.05, 0.05, 20
    x = (np.arange(n) + 0.5) * 2 * np.pi / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    w0 = 2 * np.sin(X) * np.sin(Y)  # Taylor-Green: u = sin x cos y, v = -cos x sin y
    out = np.asarray(
        ns.solve(
            jnp.asarray(w0, jnp.float32), jnp.asarray(np.cos(X), jnp.float32), nu, dt, n, 3, sub
        )
    )
    for i, t in enumerate((0.0, 1.0, 2.0)):
        decay = np.exp(-2 * nu * t)  # |k|² = 2
        # Integrating factor makes the linear decay exact; the nonlinear term vanishes for this
        # mode, so only float32 round-off (~1e-7 measured) remains.
        np.testing.assert_allclose(out[i, ..., 0], np.sin(X) * np.cos(Y) * decay, atol=2e-6)
        np.testing.assert_allclose(out[i, ..., 1], -np.cos(X) * np.sin(Y) * decay, atol=2e-6)


def test_simulate_conserves_tracer_and_stays_divergence_free():
    ts = ns.simulate(ns.NavierStokesConfig(resolution=32, n_steps=5), 2, seed=0)
    d = ts.data.astype(np.float64)
    assert ts.data.shape == (2, 5, 32, 32, 3)
    tracer = d[..., 2].mean(axis=(2, 3))
    # Mean tracer is the k = 0 Fourier mode, untouched by dealiased advection: round-off only.
    np.testing.assert_allclose(tracer, tracer[:, :1] * np.ones((1, 5)), atol=1e-5)
    k = np.fft.fftfreq(32, 1 / 32)
    div = np.fft.ifft2(
        1j * k[:, None] * np.fft.fft2(d[..., 0]) + 1j * k[None, :] * np.fft.fft2(d[..., 1])
    ).real
    assert np.abs(div).max() < 1e-4  # spectral divergence of a stream-function field
    ke = (d[..., :2] ** 2).mean(axis=(2, 3, 4))
    assert (np.diff(ke, axis=1) < 0).all()  # viscous decay of kinetic energy
    np.testing.assert_allclose(ke[:, 0], 0.5, rtol=1e-4)  # rms velocity 1 at t = 0


def test_inviscid_run_conserves_energy_and_enstrophy():
    # With ν = 0 the dealiased (Galerkin-truncated) system conserves kinetic energy and
    # enstrophy exactly; only the RK4 time error (O(dt⁴)) and round-off remain.
    n = 32
    rng = np.random.default_rng(0)
    k = np.fft.fftfreq(n, 1 / n)
    kk = np.sqrt(k[:, None] ** 2 + k[None] ** 2)
    keep = (np.abs(k[:, None]) < n / 3) & (np.abs(k[None]) < n / 3) & (kk > 0)
    w_hat = np.fft.fft2(rng.normal(size=(n, n))) * keep * np.exp(-((kk - 3) ** 2) / 2)
    w0 = np.fft.ifft2(w_hat).real
    w0 /= w0.std()
    # Same shapes as the Taylor-Green test: n = 32, 3 frames -> no new compilation.
    out = np.asarray(
        ns.solve(jnp.asarray(w0, jnp.float32), jnp.zeros((n, n)), 0.0, 0.02, n, 3, 25), np.float64
    )
    u, v = out[..., 0], out[..., 1]
    energy = (u**2 + v**2).mean(axis=(1, 2))
    w = np.fft.ifft2(1j * k[:, None] * np.fft.fft2(v) - 1j * k[None] * np.fft.fft2(u)).real
    enstrophy = (w**2).mean(axis=(1, 2))
    # Measured relative drifts 2.4e-7 (energy), 1.9e-7 (enstrophy) over 50 steps; bound 1e-4.
    np.testing.assert_allclose(energy, energy[0], rtol=1e-4)
    np.testing.assert_allclose(enstrophy, enstrophy[0], rtol=1e-4)
    assert np.abs(out[-1] - out[0]).max() > 0.05  # the flow did evolve
