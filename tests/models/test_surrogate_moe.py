"""The surrogate with space_mixer="moe": MoE experts in the space blocks, aux losses sown."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.surrogate import AViT, SpaceBlock, avit_config
from jaxfm.nn.aux import pop_aux
from jaxfm.nn.mlp import MLP
from jaxfm.nn.moe import MoE
from jaxfm.nn.trunk import TrunkConfig


def _batch():
    x = np.random.default_rng(0).normal(size=(2, 2, 16, 16, 3)).astype(np.float32)
    return jnp.asarray(x), jnp.array([[0, 4, 7], [0, 4, 7]], jnp.int32)


# delta=False: the delta model's zero-initialised output would hide every upstream gradient;
# layer_scale 1 so the blocks shape the output.
_CFG = avit_config("smoke", space_mixer="moe", layer_scale=1.0, delta=False)


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
    tdef = TrunkConfig()
    assert isinstance(ffn, MoE)
    assert ffn.n_experts == tdef.n_experts and ffn.top_k == tdef.top_k
    # Hidden width per expert = dim * mlp_ratio / top_k (active parameters of the dense MLP).
    assert ffn.w_up[...].shape == (
        tdef.n_experts,
        cfg.dim,
        int(cfg.dim * cfg.mlp_ratio / tdef.top_k),
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
