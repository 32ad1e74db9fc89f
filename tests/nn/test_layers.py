"""Shared layers against float64 NumPy references on fresh random inputs."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.nn import aux
from jaxfm.nn.mlp import MLP
from jaxfm.nn.norms import LayerNorm, RMSNorm, make_norm
from jaxfm.nn.transformer import Block, MultiHeadAttention, drop_path
from jaxfm.nn.trunk import MLPConfig, Trunk, TrunkConfig, count_params

RNG = np.random.default_rng()  # fresh inputs every run; tolerances cover float32 round-off


def _np(x):
    return np.asarray(x, np.float64)


def test_rmsnorm_and_layernorm_match_numpy():
    x = RNG.normal(size=(3, 5, 16)).astype(np.float32) * 3 + 1
    r = RMSNorm(16)
    r.scale[...] = jnp.asarray(RNG.normal(size=16), jnp.float32)
    ref = _np(x) / np.sqrt(np.mean(_np(x) ** 2, -1, keepdims=True) + 1e-6) * _np(r.scale[...])
    np.testing.assert_allclose(r(jnp.asarray(x)), ref, rtol=1e-5, atol=1e-5)
    ln = LayerNorm(16)
    ln.bias[...] = jnp.asarray(RNG.normal(size=16), jnp.float32)
    mu, var = _np(x).mean(-1, keepdims=True), _np(x).var(-1, keepdims=True)
    ref = (_np(x) - mu) / np.sqrt(var + 1e-6) + _np(ln.bias[...])
    np.testing.assert_allclose(ln(jnp.asarray(x)), ref, rtol=1e-5, atol=1e-5)
    assert r(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        make_norm("batch", 4)


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_mlp_matches_numpy(activation):
    from scipy.special import erf

    m = MLP(8, 32, activation=activation, rngs=nnx.Rngs(int(RNG.integers(1 << 30))))
    x = RNG.normal(size=(4, 8)).astype(np.float32)
    W = lambda layer: (_np(layer.kernel[...]), _np(layer.bias[...]))  # noqa: E731
    (wu, bu), (wd, bd) = W(m.up), W(m.down)
    h = _np(x) @ wu + bu
    if activation == "swiglu":
        wg, bg = W(m.gate)
        g = _np(x) @ wg + bg
        h = g / (1 + np.exp(-g)) * h
    else:
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    np.testing.assert_allclose(m(jnp.asarray(x)), h @ wd + bd, rtol=1e-4, atol=1e-5)


def _attention_ref(x, ctx, m, heads, kv_heads, mask=None, bias=None, causal=False):
    b, lq, _ = x.shape
    lk = ctx.shape[1]
    hd = m.head_dim
    W = lambda layer: (_np(layer.kernel[...]), _np(layer.bias[...]))  # noqa: E731
    q = (x @ W(m.q)[0] + W(m.q)[1]).reshape(b, lq, heads, hd)
    k = (ctx @ W(m.k)[0] + W(m.k)[1]).reshape(b, lk, kv_heads, hd)
    v = (ctx @ W(m.v)[0] + W(m.v)[1]).reshape(b, lk, kv_heads, hd)
    if m.q_norm is not None:
        rms = lambda t, s: t / np.sqrt(np.mean(t**2, -1, keepdims=True) + 1e-6) * s  # noqa: E731
        q, k = rms(q, _np(m.q_norm.scale[...])), rms(k, _np(m.k_norm.scale[...]))
    k = np.repeat(k, heads // kv_heads, axis=2)
    v = np.repeat(v, heads // kv_heads, axis=2)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(hd)
    if bias is not None:
        logits = logits + bias
    allowed = np.ones(logits.shape, bool)
    if mask is not None:
        allowed &= mask
    if causal:
        allowed &= np.tril(np.ones((lq, lk), bool))
    logits = np.where(allowed, logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = np.einsum("bhqk,bkhd->bqhd", p, v).reshape(b, lq, heads * hd)
    return o @ W(m.out)[0] + W(m.out)[1]


@pytest.mark.parametrize(
    "kv_heads, qk_norm, causal, cross",
    [
        (4, False, False, False),
        (2, True, False, False),
        (1, False, True, False),
        (4, True, False, True),
    ],
)
def test_multihead_attention_matches_numpy(kv_heads, qk_norm, causal, cross):
    dim, heads = 32, 4
    m = MultiHeadAttention(
        dim,
        heads,
        kv_heads=kv_heads,
        qk_norm=qk_norm,
        causal=causal,
        context_dim=24 if cross else None,
        rngs=nnx.Rngs(int(RNG.integers(1 << 30))),
    )
    x = RNG.normal(size=(2, 7, dim)).astype(np.float32)
    ctx = RNG.normal(size=(2, 5, 24)).astype(np.float32) if cross else x
    bias = RNG.normal(size=(1, heads, 7, ctx.shape[1])).astype(np.float32)
    mask = RNG.random((2, 1, 7, ctx.shape[1])) > 0.3
    mask[..., 0] = True  # every query keeps at least one key
    got = m(
        jnp.asarray(x),
        context=jnp.asarray(ctx) if cross else None,
        bias=jnp.asarray(bias),
        mask=jnp.asarray(mask),
    )
    ref = _attention_ref(_np(x), _np(ctx), m, heads, kv_heads, mask, _np(bias), causal)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_drop_path_keeps_expectation_and_is_off_when_deterministic():
    x = jnp.ones((4000, 3))
    y = drop_path(x, 0.25, deterministic=False, rngs=nnx.Rngs(dropout=0))
    kept = np.asarray(y[:, 0] > 0)
    assert 0.70 < kept.mean() < 0.80  # Bernoulli(0.75) over 4000 rows: 5 sigma ~ 0.034
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
    assert drop_path(x, 0.25, deterministic=True, rngs=nnx.Rngs(dropout=0)) is x


def test_block_is_a_residual_around_mixer_and_ffn():
    dim = 16
    mixer = MultiHeadAttention(dim, 2, rngs=nnx.Rngs(0))
    ffn = MLP(dim, 32, rngs=nnx.Rngs(1))
    blk = Block(dim, mixer, ffn, layer_scale=0.5)
    x = jnp.asarray(RNG.normal(size=(2, 5, dim)), jnp.float32)
    h = x + 0.5 * mixer(blk.norm1(x))
    ref = h + 0.5 * ffn(blk.norm2(h))
    np.testing.assert_allclose(blk(x), ref, rtol=1e-5, atol=1e-5)


def test_trunk_shapes_params_and_unknown_names():
    cfg = TrunkConfig(depth=2, dim=32, mlp=MLPConfig(mlp_ratio=2.0))
    t = Trunk(cfg, rngs=nnx.Rngs(0))
    assert t(jnp.ones((2, 9, 32))).shape == (2, 9, 32)
    per_block = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 2 * 32
    assert count_params(t) == 2 * per_block + 2 * 32
    with pytest.raises(ValueError, match="unknown trunk mixer 'rnn'.*attention"):
        Trunk(TrunkConfig(mixer="rnn"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown trunk ffn 'kan'.*moe"):
        Trunk(TrunkConfig(ffn="kan"), rngs=nnx.Rngs(0))


def test_aux_losses_are_summed_and_metrics_averaged():
    class Sower(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(2, 2, rngs=nnx.Rngs(0))

        def __call__(self, x, w):
            aux.record_aux_loss(self, "balance", jnp.float32(w))
            aux.record_metric(self, "load", jnp.float32(2 * w))
            return self.lin(x)

    class Two(nnx.Module):
        def __init__(self):
            self.a, self.b = Sower(), Sower()

        def __call__(self, x):
            return self.b(self.a(self.a(x, 1.0), 3.0), 5.0)

    model = Two()
    model(jnp.ones((1, 2)))
    total, metrics = aux.pop_aux(model)
    assert float(total) == 9.0
    assert float(metrics["aux/a/load"]) == 4.0 and float(metrics["aux/b/load"]) == 10.0
    total, metrics = aux.pop_aux(model)
    assert float(total) == 0.0 and metrics == {}
