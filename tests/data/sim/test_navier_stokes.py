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
