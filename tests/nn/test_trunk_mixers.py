"""Swappable trunks: every mixer and feed-forward builds from one config line, keeps the
(B, L, D) call shape, respects ``causal`` and key-padding masks, records MoE losses, gets every
sub-config setting, and (fast, on held-out data) carries information along the sequence."""

import dataclasses
import json
import os
import typing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxfm.config import cli, from_dict, to_dict
from jaxfm.models.specformer import SpecFormerConfig
from jaxfm.models.vit import ViTConfig
from jaxfm.nn.aux import pop_aux
from jaxfm.nn.bidirectional import Bidirectional
from jaxfm.nn.mamba import Mamba
from jaxfm.nn.mlp import MLP
from jaxfm.nn.moe import MoE
from jaxfm.nn.ssd import Mamba2
from jaxfm.nn.transformer import MultiHeadAttention
from jaxfm.nn.trunk import (
    FFNS,
    MIXERS,
    AttentionConfig,
    FFNName,
    Mamba2Config,
    MambaConfig,
    MixerName,
    MLPConfig,
    MoEConfig,
    Trunk,
    TrunkConfig,
)

SMALL = TrunkConfig(
    depth=1,
    dim=32,
    norm="rmsnorm",
    attention=AttentionConfig(heads=4),
    mamba=MambaConfig(d_state=8, chunk=8),
    mamba2=Mamba2Config(d_state=8, headdim=16, chunk=8),
    moe=MoEConfig(n_experts=4),
)
# one call shape per registry entry: each mixer with the dense MLP, each ffn after attention
SHAPES = [(m, "mlp") for m in MIXERS] + [("attention", f) for f in FFNS if f != "mlp"]


def test_registries_match_the_config_literals():
    assert sorted(MIXERS) == sorted(typing.get_args(MixerName)) == ["attention", "mamba", "mamba2"]
    assert sorted(FFNS) == sorted(typing.get_args(FFNName)) == ["mlp", "moe", "none"]


@pytest.mark.parametrize("mixer, ffn", SHAPES)
def test_causal_trunk_call_shape_and_causality(mixer, ffn):
    cfg = dataclasses.replace(SMALL, mixer=mixer, ffn=ffn, causal=True)
    trunk = Trunk(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 16, 32))

    @nnx.jit
    def f(trunk, x):
        y = trunk(x)
        return y, pop_aux(trunk)

    (y, (aux, metrics)), (y2, _) = f(trunk, x), f(trunk, x.at[:, 10].add(1.0))
    assert y.shape == x.shape and y.dtype == x.dtype
    # fp32 causal paths: earlier tokens may differ only by reassociation inside XLA
    np.testing.assert_allclose(np.asarray(y[:, :10]), np.asarray(y2[:, :10]), atol=1e-6)
    assert np.abs(np.asarray(y[:, 10:] - y2[:, 10:])).max() > 1e-3
    block = trunk.blocks[0]
    assert (block.ffn is None) == (ffn == "none")
    if ffn == "moe":  # the MoE block records balance and z losses (balance >= 0.01 * k)
        assert float(aux) > 0.02 and any(k.endswith("max_load") for k in metrics)
    else:
        assert float(aux) == 0.0


@pytest.mark.parametrize("mixer", ["mamba", "mamba2"])
def test_noncausal_ssm_trunk_is_bidirectional_and_takes_key_masks(mixer):
    trunk = Trunk(dataclasses.replace(SMALL, mixer=mixer), rngs=nnx.Rngs(1))
    assert isinstance(trunk.blocks[0].mixer, Bidirectional)
    x = jax.random.normal(jax.random.key(1), (1, 16, 32))
    f = nnx.jit(lambda t, x, m: t(x, mask=m))
    keymask = jnp.ones((1, 1, 1, 16), bool)  # the attention-style key-padding mask
    y, y2 = f(trunk, x, keymask), f(trunk, x.at[:, 12].add(1.0), keymask)
    assert np.abs(np.asarray(y[:, :12] - y2[:, :12])).max() > 1e-3  # sees the future


def test_every_sub_config_field_reaches_the_module():
    def block(**kw):
        return Trunk(dataclasses.replace(SMALL, causal=True, **kw), rngs=nnx.Rngs(0)).blocks[0]

    attn = block(attention=AttentionConfig(heads=8, kv_heads=2, qk_norm=True, attn_impl="xla"))
    a = attn.mixer
    assert isinstance(a, MultiHeadAttention)
    assert (a.heads, a.kv_heads, a.head_dim, a.impl) == (8, 2, 4, "xla")
    assert a.q_norm is not None and a.k.kernel[...].shape == (32, 2 * 4)

    m = block(
        mixer="mamba",
        ffn="none",
        mamba=MambaConfig(
            d_state=8, d_conv=3, expand=1, dt_rank=5, scan="assoc", chunk=4, bias=True
        ),
    ).mixer
    assert isinstance(m, Mamba) and (m.d_state, m.inner, m.dt_rank) == (8, 32, 5)
    assert (m.scan, m.chunk) == ("assoc", 4) and m.A_log[...].shape == (32, 8)
    assert m.conv.kernel[...].shape[0] == 3 and m.in_proj.bias is not None
    assert block(mixer="mamba", mamba=MambaConfig(d_state=4)).mixer.A_log[...].shape == (64, 4)
    lo = block(mixer="mamba", mamba=MambaConfig(dt_min=1e-3, dt_max=1e-3, dt_floor=1e-5)).mixer
    dt = jax.nn.softplus(lo.dt_bias[...])
    np.testing.assert_allclose(np.asarray(dt), 1e-3, rtol=1e-3)  # dt_min = dt_max pins dt

    m2 = block(
        mixer="mamba2", mamba2=Mamba2Config(d_state=4, expand=1, headdim=8, ngroups=2, chunk=4)
    ).mixer
    assert isinstance(m2, Mamba2)
    assert (m2.d_state, m2.inner, m2.heads, m2.ngroups, m2.chunk) == (4, 32, 4, 2, 4)

    mlp = block(mlp=MLPConfig(mlp_ratio=2.0, activation="gelu", dropout=0.25)).ffn
    assert isinstance(mlp, MLP) and mlp.up.kernel[...].shape == (32, 64)
    assert mlp.dropout.rate == 0.25
    assert block(mlp=MLPConfig(activation="swiglu")).ffn.gate is not None

    moe_cfg = MoEConfig(
        n_experts=3,
        top_k=1,
        hidden_ratio=0.5,
        activation="swiglu",
        dispatch="capacity",
        capacity_factor=2.0,
        lb_weight=0.5,
        z_weight=0.25,
        bias_rate=0.125,
    )
    moe = block(ffn="moe", moe=moe_cfg).ffn
    assert isinstance(moe, MoE) and (moe.n_experts, moe.top_k, moe.activation) == (3, 1, "swiglu")
    assert (moe.dispatch, moe.capacity_factor) == ("capacity", 2.0)
    assert (moe.lb_weight, moe.z_weight, moe.bias_rate) == (0.5, 0.25, 0.125)
    assert moe.w_down[...].shape == (3, 16, 32)  # hidden = 0.5 * dim
    # hidden_ratio None: mlp.mlp_ratio / top_k, the dense MLP's active compute
    assert block(ffn="moe", moe=MoEConfig(top_k=2)).ffn.w_down[...].shape == (8, 64, 32)


@pytest.mark.parametrize("mixer", ["mamba", "mamba2"])
def test_ssm_n_layer_follows_the_trunk_depth(mixer):
    def first_mixer(depth, ffn):
        cfg = dataclasses.replace(SMALL, mixer=mixer, ffn=ffn, causal=True, depth=depth)
        return Trunk(cfg, rngs=nnx.Rngs(0)).blocks[0].mixer

    shallow, deep = first_mixer(1, "none"), first_mixer(4, "none")
    assert (shallow.n_layer, deep.n_layer, deep.n_residual) == (1, 4, 1)
    # same draws, out_proj init divided by sqrt(n_residual * n_layer) = 2
    np.testing.assert_allclose(
        np.asarray(deep.out_proj.kernel[...]), np.asarray(shallow.out_proj.kernel[...]) / 2
    )
    assert first_mixer(4, "mlp").n_residual == 2  # the feed-forward is a residual branch too


def test_unknown_mixer_or_ffn_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown trunk mixer 'rwkv'; choose one of \["):
        Trunk(dataclasses.replace(SMALL, mixer="rwkv"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown trunk ffn 'kan'; choose one of .*'none'"):
        Trunk(dataclasses.replace(SMALL, ffn="kan"), rngs=nnx.Rngs(0))


@dataclasses.dataclass(frozen=True)
class _Exp:
    model: ViTConfig = ViTConfig()


def test_command_line_reaches_the_trunk_sub_configs(capsys):
    presets = {"base": _Exp}
    argv = [
        "base",
        "--model.trunk.mixer=mamba2",
        "--model.trunk.ffn",
        "moe",
        "--model.trunk.mamba2.d_state=8",
        "--model.trunk.moe.n-experts=3",
        "--model.trunk.attention.heads=2",
    ]
    trunk = cli(_Exp, presets, argv).model.trunk
    assert (trunk.mixer, trunk.ffn, trunk.mamba2.d_state) == ("mamba2", "moe", 8)
    assert (trunk.moe.n_experts, trunk.attention.heads) == (3, 2)
    for bad, msg in [
        ("--model.trunk.mixer=rwkv", "invalid value 'rwkv' for model.trunk.mixer (expected one of"),
        ("--model.trunk.ffn=kan", "invalid value 'kan' for model.trunk.ffn (expected one of"),
        ("--model.trunk.mamba.d_sate=8", "did you mean 'model.trunk.mamba.d_state'"),
    ]:
        with pytest.raises(SystemExit):
            cli(_Exp, presets, ["base", bad])
        assert msg in capsys.readouterr().err


def test_configs_saved_with_the_flat_kind_field_still_load():
    old = {
        "kind": "moe",
        "depth": 2,
        "dim": 64,
        "heads": 2,
        "mlp_ratio": 2.0,
        "activation": "swiglu",
        "d_state": 8,
        "ssm_chunk": 16,
        "n_experts": 3,
        "moe_dispatch": "dense",
        "ssm_mlp": False,
    }
    cfg = from_dict(TrunkConfig, old)
    assert (cfg.mixer, cfg.ffn, cfg.depth, cfg.attention.heads) == ("attention", "moe", 2, 2)
    assert (cfg.mlp.mlp_ratio, cfg.mlp.activation, cfg.moe.activation) == (2.0, "swiglu", "swiglu")
    assert (cfg.mamba.d_state, cfg.mamba2.d_state, cfg.mamba.chunk, cfg.mamba2.chunk) == (
        8,
        8,
        16,
        16,
    )
    assert (cfg.moe.n_experts, cfg.moe.dispatch) == (3, "dense")
    ssm = (
        from_dict(TrunkConfig, {"kind": "mamba"}),
        from_dict(TrunkConfig, {"kind": "mamba2", "ssm_mlp": True}),
    )
    assert [(c.mixer, c.ffn) for c in ssm] == [("mamba", "none"), ("mamba2", "mlp")]
    assert from_dict(TrunkConfig, to_dict(cfg)) == cfg  # the new layout round-trips
    # a run config saved in the older flat layout (kind, heads, mlp_ratio at the trunk's top)
    path = os.path.join(os.path.dirname(__file__), "../fixtures/config_flat_trunk_layout.json")
    with open(path) as f:
        spectrum = from_dict(SpecFormerConfig, json.load(f)["model"]["spectrum"])
    assert (spectrum.trunk.mixer, spectrum.trunk.ffn, spectrum.trunk.attention.heads) == (
        "attention",
        "mlp",
        4,
    )


# --------------------------------------------------------------------------- learning

DELAY, LENGTH, FEAT = 2, 16, 4


class _CopyModel(nnx.Module):
    """Linear in + learned positions -> causal trunk -> linear out."""

    def __init__(self, cfg: TrunkConfig, rngs: nnx.Rngs):
        self.inp = nnx.Linear(FEAT, cfg.dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (LENGTH, cfg.dim)))
        self.trunk = Trunk(cfg, rngs=rngs)
        self.out = nnx.Linear(cfg.dim, FEAT, rngs=rngs)

    def __call__(self, x):
        return self.out(self.trunk(self.inp(x) + self.pos[...][None]))


def _copy_batch(key, batch=32):
    x = jax.random.normal(key, (batch, LENGTH, FEAT))
    return x, jnp.pad(x, ((0, 0), (DELAY, 0), (0, 0)))[:, :LENGTH]  # target_t = x_{t-DELAY}


# Attention finds the positional lookup later than the state-space mixers (about step 120).
STEPS = {"attention": 200, "mamba": 120, "mamba2": 120}


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_each_mixer_carries_information_along_the_sequence(mixer):
    # Predict x_{t-2} from x_1..x_t on fresh Gaussian sequences each step. x_{t-2} is
    # independent of x_t, so a model without memory of the past can do no better than 0:
    # its loss is at least the floor mean(target^2) (~0.87) on held-out data. The mixer must
    # bring the held-out loss below a quarter of that floor (it reaches ~0.03 of it).
    ffn = "mlp" if mixer == "attention" else "none"
    cfg = dataclasses.replace(SMALL, mixer=mixer, ffn=ffn, causal=True)
    model = _CopyModel(cfg, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, key):
        x, target = _copy_batch(key)
        loss, g = nnx.value_and_grad(lambda m: jnp.mean(jnp.square(m(x) - target)))(model)
        opt.update(model, g)
        return loss

    for key in jax.random.split(jax.random.key(1), STEPS[mixer]):
        step(model, opt, key)
    x, target = _copy_batch(jax.random.key(2), batch=64)
    held_out = float(nnx.jit(lambda m: jnp.mean(jnp.square(m(x) - target)))(model))
    floor = float(jnp.mean(jnp.square(target)))
    assert held_out < 0.25 * floor, (mixer, held_out, floor)
