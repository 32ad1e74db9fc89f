"""The surrogate with ffn="moe": MoE experts in the space blocks, aux losses sown; every
mixer / ffn sub-config setting reaches the AViT's modules."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.config import from_dict, to_dict
from jaxfm.models.surrogate import AViT, AViTConfig, SpaceBlock, TimeBlock, avit_config
from jaxfm.nn.aux import pop_aux
from jaxfm.nn.mamba import Mamba
from jaxfm.nn.mlp import MLP
from jaxfm.nn.moe import MoE
from jaxfm.nn.ssd import Mamba2
from jaxfm.nn.trunk import Mamba2Config, MambaConfig, MoEConfig


def _batch():
    x = np.random.default_rng(0).normal(size=(2, 2, 16, 16, 3)).astype(np.float32)
    return jnp.asarray(x), jnp.array([[0, 4, 7], [0, 4, 7]], jnp.int32)


# delta=False: the delta model's zero-initialised output would hide every upstream gradient;
# layer_scale 1 so the blocks shape the output.
_CFG = avit_config("smoke", ffn="moe", layer_scale=1.0, delta=False)


def _loss(m, x, ids):
    y = m(x, ids, periodic=(False, False))
    aux, metrics = pop_aux(m)
    return jnp.mean(y**2) + aux, (aux, metrics)


def test_moe_surrogate_has_experts_and_sows_aux_losses():
    cfg = _CFG
    # One space block alone: building the whole AViT eagerly takes ~20 s on this CPU (the
    # slow test below runs it end to end).
    block = SpaceBlock(cfg, 0.0, rngs=nnx.Rngs(0))
    ffn = block.mlp
    tdef = MoEConfig()
    assert isinstance(ffn, MoE)
    assert ffn.n_experts == tdef.n_experts and ffn.top_k == tdef.top_k
    # Hidden width per expert = dim * mlp_ratio / top_k (active parameters of the dense MLP).
    assert ffn.w_up[...].shape == (
        tdef.n_experts,
        cfg.dim,
        int(cfg.dim * cfg.mlp.mlp_ratio / tdef.top_k),
    )
    # tokens (N, h, w, D), periodic flags per row
    tok = jnp.asarray(np.random.default_rng(1).normal(size=(4, 2, 2, cfg.dim)), jnp.float32)

    @nnx.jit
    def forward(b, t):
        y = b(t, jnp.zeros((4, 2), bool))
        return y, pop_aux(b)

    y, (aux, metrics) = forward(block, tok)
    assert y.shape == tok.shape and np.all(np.isfinite(np.asarray(y)))
    names = [k for k in metrics if k.startswith("aux/mlp")]
    assert any(k.endswith("load_balance") for k in names), sorted(metrics)
    assert any(k.endswith("router_z") for k in names), names
    # The Switch balance loss is >= its weight (E * sum f_i P_i >= 1 with k-way routing
    # normalised as in jaxfm.nn.moe), so a positive total proves the losses were recorded.
    assert np.isfinite(float(aux)) and float(aux) > 0


@pytest.mark.slow  # ~35 s: building the AViT eagerly and compiling its backward pass
def test_moe_surrogate_experts_get_gradients():
    model = AViT(_CFG, rngs=nnx.Rngs(0))
    x, ids = _batch()
    grads, _ = nnx.jit(nnx.grad(_loss, has_aux=True))(model, x, ids)
    g = nnx.to_pure_dict(grads)["blocks"][0]["space"]["mlp"]
    for name in ("w_up", "w_down", "router"):  # experts and router trained through the loss
        assert float(jnp.abs(g[name]).max()) > 0, name


def test_attention_surrogate_keeps_dense_mlp():
    assert isinstance(SpaceBlock(avit_config("smoke"), 0.0, rngs=nnx.Rngs(0)).mlp, MLP)


def test_avit_sub_configs_reach_the_modules():
    cfg = avit_config(
        "smoke",
        depth=3,
        time_mixer="mamba",
        space_mixer="mamba2",
        ffn="moe",
        mamba=MambaConfig(d_state=8, expand=1),
        mamba2=Mamba2Config(d_state=4, headdim=8),
        moe=MoEConfig(n_experts=3, top_k=1, hidden_ratio=1.0),
    )
    time, space = (
        TimeBlock(cfg, 0.0, index=2, rngs=nnx.Rngs(0)),
        SpaceBlock(cfg, 0.0, index=2, rngs=nnx.Rngs(1)),
    )
    assert time.rel_bias is None and space.rel_bias is None
    fwd = time.mixer.forward  # non-causal time: bidirectional Mamba
    assert isinstance(fwd, Mamba) and fwd.d_state == 8 and fwd.inner == cfg.dim
    assert fwd.n_layer == cfg.depth == 3  # n_layer follows the AViT depth
    fwd2 = space.mixer.forward
    assert isinstance(fwd2, Mamba2) and fwd2.d_state == 4 and fwd2.headdim == 8
    assert fwd2.n_layer == 3 and fwd2.n_residual == 2  # the space block's mixer + ffn
    assert isinstance(space.mlp, MoE) and space.mlp.n_experts == 3 and space.mlp.top_k == 1
    assert space.mlp.w_up[...].shape == (3, cfg.dim, cfg.dim)
    causal = TimeBlock(
        dataclasses.replace(cfg, time_causal=True), 0.0, rngs=nnx.Rngs(0)
    ).mixer  # causal time: one direction
    assert isinstance(causal, Mamba)
    no_ffn = SpaceBlock(dataclasses.replace(cfg, ffn="none"), 0.0, rngs=nnx.Rngs(0))
    assert no_ffn.mlp is None
    tok = jnp.ones((2, 2, 2, cfg.dim))
    assert no_ffn(tok, jnp.zeros((2, 2), bool)).shape == tok.shape


def test_avit_unknown_mixer_or_ffn_names_the_value():
    with pytest.raises(ValueError, match="unknown AViT mixer 'rnn'"):
        TimeBlock(avit_config("smoke", time_mixer="rnn"), 0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown AViT ffn 'kan'"):
        SpaceBlock(avit_config("smoke", ffn="kan"), 0.0, rngs=nnx.Rngs(0))


def test_avit_reads_configs_saved_with_space_mixer_moe():
    data = to_dict(avit_config("smoke"))
    for k in ("ffn", "mlp", "moe", "mamba", "mamba2"):
        data.pop(k)
    data.update(space_mixer="moe", mlp_ratio=2.0)
    cfg = from_dict(AViTConfig, data)
    assert (cfg.time_mixer, cfg.space_mixer, cfg.ffn) == ("attention", "attention", "moe")
    assert cfg.mlp.mlp_ratio == 2.0
