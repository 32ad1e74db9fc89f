"""Contrastive family: tokeniser, masks, encoders, pooling heads, freezing, pretraining step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxfm.models.contrastive import (
    ContrastiveConfig,
    ContrastiveModel,
    CrossAttentionPool,
    trainable_filter,
)
from jaxfm.models.resnet import ResNet, ResNetConfig
from jaxfm.models.specformer import (
    SpecFormer,
    SpecFormerConfig,
    chunk_mask,
    masked_modelling_loss,
    spectrum_tokenize,
    untokenize_stats,
)
from jaxfm.models.vit import ViT, ViTConfig
from jaxfm.nn.trunk import AttentionConfig, TrunkConfig

TINY = TrunkConfig(depth=1, dim=32, attention=AttentionConfig(heads=2))
SPEC = SpecFormerConfig(
    spectrum_len=128, section=16, stride=8, trunk=TINY, mask_segments=3, mask_len=3
)
CFG = ContrastiveConfig(
    vit=ViTConfig(image_size=16, patch=4, trunk=TINY),
    resnet=ResNetConfig(widths=(8, 16), groups=4),
    spectrum=SPEC,
    embed_dim=24,
    head_heads=2,
    head_mlp_ratio=2.0,
)


def _batch(b=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=(b, 16, 16, 3)), jnp.float32),
        jnp.asarray(rng.lognormal(size=(b, 128, 1)), jnp.float32),
    )


def test_tokenizer_matches_numpy_and_real_shape():
    rng = np.random.default_rng(0)
    x = rng.lognormal(1.0, 1.0, size=(2, 128, 1)).astype(np.float32)
    tok = np.asarray(spectrum_tokenize(jnp.asarray(x), SPEC))
    assert tok.shape == (2, 1 + 15, 18)  # (128 - 16) // 8 + 1 = 15 sections
    xs = x[..., 0].astype(np.float64)
    mu, sd = xs.mean(1, keepdims=True), np.maximum(xs.std(1, keepdims=True), SPEC.min_std)
    z = (xs - mu) / sd
    for j in (0, 7, 14):  # section j covers pixels 8j .. 8j + 15
        np.testing.assert_allclose(tok[:, 1 + j, :16], z[:, 8 * j : 8 * j + 16], atol=1e-5)
    assert np.all(tok[:, 1:, 16:] == 0) and np.all(tok[:, 0, :16] == 0)
    mu_back, sd_back = untokenize_stats(jnp.asarray(tok), SPEC)
    np.testing.assert_allclose(np.asarray(mu_back), mu[:, 0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(sd_back), sd[:, 0], rtol=1e-5)
    # AstroCLIP's DESI shape: 7781 pixels, 20-pixel sections every 10 -> 778 x 22 tokens
    desi = SpecFormerConfig(spectrum_len=7781, section=20, stride=10, stats="astroclip")
    out = spectrum_tokenize(jnp.ones((1, 7781, 1)), desi)
    assert out.shape == (1, 778, 22)
    with pytest.raises(ValueError, match="expects spectra"):
        spectrum_tokenize(jnp.ones((1, 100, 1)), SPEC)


def test_chunk_mask_runs():
    m = np.asarray(chunk_mask(jax.random.key(1), 64, SPEC))
    assert m.shape == (64, 16) and not m[:, 0].any()
    assert (m.sum(1) == SPEC.mask_segments * SPEC.mask_len).all()
    seg = SPEC.n_sections // SPEC.mask_segments
    for row in m:  # exactly one contiguous run inside each segment
        for s in range(SPEC.mask_segments):
            part = row[1 + s * seg : 1 + (s + 1) * seg].astype(int)
            assert part.sum() == SPEC.mask_len and np.diff(part).clip(0).sum() <= 1
    assert len({r.tobytes() for r in m}) > 10  # offsets vary
    desi = SpecFormerConfig(spectrum_len=7781, section=20, stride=10, mask_segments=6, mask_len=50)
    assert int(chunk_mask(jax.random.key(0), 2, desi).sum(1)[0]) == 300  # 6 x 50 of 777


def test_encoders_shapes_and_batch_one():
    img, spec = _batch(1)
    # one jitted call per model (eager NNX dispatches op by op: slow on a busy CPU)
    fwd = nnx.jit(lambda m, x, s: (m.image_encoder(x), m.spectrum_encoder(s), *m(x, s)))
    tokens = {"vit": (1, 16, 32), "resnet": (1, 64, 16)}  # 4x4 patches; 16 -> 8 px, 16 ch
    for enc, kind in (("vit", ViT), ("resnet", ResNet)):
        m = ContrastiveModel(dataclasses.replace(CFG, image_encoder=enc), rngs=nnx.Rngs(0))
        assert isinstance(m.image_encoder, kind) and isinstance(m.spectrum_encoder, SpecFormer)
        ti, ts, za, zb = fwd(m, img, spec)
        assert ti.shape == tokens[enc] and ts.shape == (1, 16, 32)
        assert za.shape == (1, 24) and zb.shape == (1, 24)
    with pytest.raises(ValueError, match="image_encoder='cnn'"):
        ContrastiveModel(dataclasses.replace(CFG, image_encoder="cnn"), rngs=nnx.Rngs(0))


def test_cross_attention_pool_matches_reference():
    """Pooling == softmax(q K^T / sqrt(d)) V per head, LayerNorm, MLP (+residual), in plain jnp."""
    pool = CrossAttentionPool(5, 8, heads=2, mlp_ratio=2.0, residual=True, rngs=nnx.Rngs(3))
    tok = jax.random.normal(jax.random.key(4), (2, 7, 5))
    q = pool.query[...][0]  # (1, 8)
    a = pool.attn

    def lin(layer, x):
        b = layer.bias[...]
        return x @ layer.kernel[...] + b.reshape((1,) * (x.ndim - 1) + b.shape)

    qh = lin(a.q, q).reshape(1, 2, 4)
    kh, vh = lin(a.k, tok).reshape(2, 7, 2, 4), lin(a.v, tok).reshape(2, 7, 2, 4)
    w = jax.nn.softmax(jnp.einsum("qhd,bkhd->bhqk", qh, kh) / 2.0, axis=-1)
    o = lin(a.out, jnp.einsum("bhqk,bkhd->bqhd", w, vh).reshape(2, 1, 8))
    mu, var = o.mean(-1, keepdims=True), o.var(-1, keepdims=True)
    x = (o - mu) / jnp.sqrt(var + 1e-6) * pool.norm.scale[...][None, None] + pool.norm.bias[...][
        None, None
    ]
    h = lin(pool.mlp.down, jax.nn.gelu(lin(pool.mlp.up, x), approximate=False))
    # float32 matmuls of width <= 16: agreement to ~1e-6
    fwd = nnx.jit(lambda p, t: p(t))
    np.testing.assert_allclose(np.asarray(fwd(pool, tok)), np.asarray((x + h)[:, 0]), atol=1e-5)
    # attention pooling is invariant to the order of the tokens
    np.testing.assert_allclose(
        np.asarray(fwd(pool, tok[:, ::-1])), np.asarray(fwd(pool, tok)), atol=1e-5
    )


def _train_step(model, filt, loss_fn, steps=2):
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=filt)

    @nnx.jit
    def step(model, opt):
        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, filt))(model)
        opt.update(model, grads)
        return loss

    return [float(step(model, opt)) for _ in range(steps)]


def test_frozen_backbones_stay_bit_identical():
    cfg = dataclasses.replace(CFG, freeze_backbones=True, loss="siglip")
    model = ContrastiveModel(cfg, rngs=nnx.Rngs(0))
    img, spec = _batch(6)
    filt = trainable_filter(cfg)
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))

    def loss_fn(m):
        za, zb = m(img, spec)
        return jnp.mean((za - zb) ** 2) + m.logit_bias[...] ** 2 + m.scale()

    _train_step(model, filt, loss_fn)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    flat_b, flat_a = nnx.traversals.flatten_mapping(before), nnx.traversals.flatten_mapping(after)
    changed = {k for k in flat_b if not np.array_equal(flat_b[k], flat_a[k])}
    assert changed, "nothing trained"
    for k in flat_b:
        if k[0] in ("image_encoder", "spectrum_encoder"):
            assert k not in changed, f"frozen parameter {k} changed"
    assert any(k[0] == "image_head" for k in changed)
    assert ("logit_bias",) in changed and ("log_scale",) in changed


def test_fixed_scale_is_not_trained():
    cfg = dataclasses.replace(CFG, learn_scale=False, init_scale=15.5)
    model = ContrastiveModel(cfg, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(float(model.scale()), 15.5, rtol=1e-6)
    # not a parameter: neither the gradient nor the optimizer (both use nnx.Param) see it
    params = nnx.to_flat_state(nnx.state(model, trainable_filter(cfg)))
    assert not any("log_scale" in path for path, _ in params)
    grads = nnx.grad(lambda m: m.scale())(model)
    assert not any("log_scale" in path for path, _ in nnx.to_flat_state(grads))
    capped = ContrastiveModel(dataclasses.replace(CFG, init_scale=500.0), rngs=nnx.Rngs(0))
    assert float(capped.scale()) == pytest.approx(100.0)


def test_masked_modelling_loss_learns():
    """A few steps on one batch reduce the masked MSE below the zero-prediction baseline."""
    model = SpecFormer(SPEC, rngs=nnx.Rngs(0))
    wave = np.linspace(0, 1, 128)
    rng = np.random.default_rng(0)
    spec = jnp.asarray(
        (1.0 + np.sin(2 * np.pi * (wave[None] * rng.uniform(2, 4, (16, 1)))))[..., None],
        jnp.float32,
    )
    key = jax.random.key(0)
    losses = _train_step(
        model, nnx.Param, lambda m: masked_modelling_loss(m, spec, key)[0], steps=60
    )
    _, met = masked_modelling_loss(model, spec, key)
    assert losses[-1] < 0.3 * losses[0]
    assert float(met["mse_masked"]) < 0.3 * float(met["mse_zero_baseline"])
    np.testing.assert_allclose(float(met["mask_fraction"]), 9 / 15)
