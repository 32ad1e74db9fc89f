"""FNO and U-Net baselines: spectral convolution against a NumPy FFT reference, shapes,
delta = persistence at init, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.fno import FNO, FNOConfig, SpectralConv2d
from jaxfm.models.unet import UNet, UNetConfig


def test_spectral_conv_matches_numpy_fft():
    conv = SpectralConv2d(3, 2, 4, rngs=nnx.Rngs(0))
    v = np.random.default_rng(0).normal(size=(2, 16, 12, 3))
    wc = np.asarray(conv.w_re[...], np.float64) + 1j * np.asarray(conv.w_im[...], np.float64)
    f = np.fft.rfft2(v, axes=(1, 2))
    out = np.zeros((2, 16, 7, 2), complex)
    for kx in range(16):  # loop over kept modes: positive then negative first-axis freqs
        for ky in range(4):
            if kx < 4:
                out[:, kx, ky] = f[:, kx, ky] @ wc[0, kx, ky]
            elif kx >= 12:
                out[:, kx, ky] = f[:, kx, ky] @ wc[1, kx - 12, ky]
    want = np.fft.irfft2(out, s=(16, 12), axes=(1, 2))
    got = np.asarray(conv(jnp.asarray(v, jnp.float32)), np.float64)
    # float32 FFTs of 192 points: ~1e-6 relative to the O(1e-1) outputs
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # and a band-limited operator ignores high frequencies entirely
    hi = np.cos(2 * np.pi * 7 * np.arange(16) / 16)[None, :, None, None] * np.ones((1, 16, 12, 3))
    assert float(jnp.abs(conv(jnp.asarray(hi, jnp.float32))).max()) < 1e-5


@pytest.mark.parametrize(
    "make",
    [
        lambda: FNO(
            FNOConfig(n_channels=2, n_steps_input=3, width=8, modes=4, depth=2), rngs=nnx.Rngs(0)
        ),
        lambda: UNet(UNetConfig(n_channels=2, n_steps_input=3, base=4, levels=1), rngs=nnx.Rngs(0)),
    ],
    ids=["fno", "unet"],
)
def test_baselines_shapes_and_persistence_init(make):
    model = make()
    x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8, 2)) + 3.0
    apply = nnx.jit(lambda m, x: m(x, jnp.array([0, 1])))
    y = apply(model, x)
    assert y.shape == (2, 8, 8, 2)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x[:, -1]), atol=1e-5)
    # a non-zero output layer (same compiled program) moves the prediction off persistence
    model.out.kernel[...] = 0.1 * jax.random.normal(jax.random.key(1), model.out.kernel.shape)
    y = np.asarray(apply(model, x))
    assert np.all(np.isfinite(y)) and not np.allclose(y, np.asarray(x[:, -1]), atol=1e-2)


def test_baseline_errors():
    """Shape errors are raised while tracing (checked abstractly: nothing is computed)."""
    fno = FNO(FNOConfig(n_channels=2, n_steps_input=3, width=8, modes=4, depth=1), rngs=nnx.Rngs(0))
    trace = lambda model, shape: jax.eval_shape(model, jax.ShapeDtypeStruct(shape, jnp.float32))
    with pytest.raises(ValueError, match=r"built for \(B, 3, H, W, 2\)"):
        trace(fno, (1, 3, 16, 16, 4))
    with pytest.raises(ValueError, match="too many"):
        trace(fno, (1, 3, 6, 6, 2))
    unet = UNet(UNetConfig(n_channels=2, n_steps_input=3, base=8, levels=2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible by 4"):
        trace(unet, (1, 3, 18, 18, 2))
    assert trace(unet, (1, 3, 16, 16, 2)).shape == (1, 16, 16, 2)
