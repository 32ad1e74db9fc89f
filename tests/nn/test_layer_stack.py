"""Scanned and unrolled block stacks compute the same thing, with the same parameters.

Each case builds one model, runs it with ``scan_layers`` on and off and with every remat
policy (the parameters are shared, only the execution changes), and compares outputs,
gradients, recorded auxiliary losses and updated state against the plain unrolled loop, in
inference and in training (stochastic depth and dropout draw the same keys either way).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.surrogate import AViT, avit_config
from jaxfm.nn.aux import pop_aux
from jaxfm.nn.layer_stack import REMAT_POLICIES, run_stack
from jaxfm.nn.moe import RouterBias
from jaxfm.nn.trunk import MLPConfig, MoEConfig, Trunk, TrunkConfig


def _fresh_seed() -> int:
    """A new seed per run (printed on failure through the test's locals)."""
    return int(np.random.default_rng().integers(1 << 30))


def _with(model, **changes):
    """The same module (same parameters) with config fields changed."""
    model.cfg = dataclasses.replace(model.cfg, **changes)
    return model


def _loss_and_grads(model, fn):
    def loss(m):
        out = fn(m)
        aux, _ = pop_aux(m)
        return jnp.mean(out.astype(jnp.float32) ** 2) + aux, out

    (value, out), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    return value, out, nnx.to_pure_dict(grads)


def _assert_close(a, b, tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


#: (scan_layers, remat) besides the reference (unrolled, none): all of them in the slow suite,
#: three that cover scan, remat and both together in the fast one.
ALL_MODES = [(s, r) for s in (True, False) for r in REMAT_POLICIES if (s, r) != (False, "none")]
FAST_MODES = [(True, "none"), (False, "full"), (True, "dots_no_batch")]


def _all_modes(model, fn, modes, *, tol=2e-5):
    """Each (scan, remat) combination matches the unrolled, non-rematerialised reference."""
    _with(model, scan_layers=False, remat="none")
    ref = _loss_and_grads(model, fn)
    for scan, remat in modes:
        got = _loss_and_grads(_with(model, scan_layers=scan, remat=remat), fn)
        _assert_close(got, ref, tol)
    return ref


@pytest.mark.parametrize(
    "mixer, ffn, modes",
    [
        ("attention", "mlp", FAST_MODES),
        ("attention", "moe", FAST_MODES[:1]),
        pytest.param("attention", "mlp", ALL_MODES, marks=pytest.mark.slow),
        pytest.param("mamba", "none", ALL_MODES, marks=pytest.mark.slow),
        pytest.param("mamba2", "moe", ALL_MODES, marks=pytest.mark.slow),
    ],
)
def test_trunk_scanned_equals_unrolled_in_inference_and_training(mixer, ffn, modes):
    cfg = TrunkConfig(
        mixer=mixer,
        ffn=ffn,
        depth=2,
        dim=32,
        drop_path=0.3,
        mlp=MLPConfig(dropout=0.2),
        moe=MoEConfig(n_experts=4, top_k=2),
    )
    rngs = nnx.Rngs(_fresh_seed())
    trunk = Trunk(cfg, rngs=rngs)
    x = jax.random.normal(rngs.params(), (2, 10, 32))
    ref = _all_modes(trunk, lambda m: m(x), modes)
    # training: per-block keys come from one draw of the caller's stream, whatever the mode
    train = _all_modes(trunk, lambda m: m(x, deterministic=False, rngs=nnx.Rngs(dropout=3)), modes)
    assert not np.allclose(ref[1], train[1]), "training should drop something"


def test_moe_router_bias_updates_and_aux_losses_survive_the_scan():
    cfg = TrunkConfig(ffn="moe", depth=3, dim=16, moe=MoEConfig(n_experts=4, top_k=1))
    cfg = dataclasses.replace(cfg, moe=dataclasses.replace(cfg.moe, bias_rate=0.1))
    # 26 tokens over 4 experts: no expert can carry exactly the mean load, so the sign in the
    # bias update never sits on a tie that rounding (of the mean) could break either way
    x = jax.random.normal(jax.random.key(_fresh_seed()), (2, 13, 16))
    results = {}
    for scan in (False, True):
        trunk = Trunk(dataclasses.replace(cfg, scan_layers=scan), rngs=nnx.Rngs(0))
        trunk(x, deterministic=False, rngs=nnx.Rngs(dropout=1))
        aux, metrics = pop_aux(trunk)
        bias = nnx.to_pure_dict(nnx.state(trunk, RouterBias))
        results[scan] = (aux, metrics, bias)
    (a0, m0, b0), (a1, m1, b1) = results[False], results[True]
    assert set(m0) == set(m1) and any("blocks/2" in k for k in m1), sorted(m1)
    _assert_close((a0, m0, b0), (a1, m1, b1), 1e-5)
    assert any(np.abs(v).max() > 0 for v in jax.tree.leaves(b1)), "router bias never moved"


@pytest.mark.parametrize(
    "modes, inference",
    [(FAST_MODES[:1], False), pytest.param(ALL_MODES, True, marks=pytest.mark.slow)],
)
def test_avit_scanned_equals_unrolled_with_drop_path_and_periodic_axes(modes, inference):
    cfg = avit_config("smoke", depth=2, drop_path=0.4, patch_jitter=True, input_noise=0.01)
    rngs = nnx.Rngs(_fresh_seed())
    model = AViT(cfg, rngs=rngs)
    x = jax.random.normal(rngs.params(), (2, 3, 16, 16, 2))
    ids = jnp.array([[0, 1], [2, 3]])
    periodic = jnp.array([[True, False], [True, True]])
    train = _all_modes(
        model,
        lambda m: m(x, ids, periodic=periodic, deterministic=False, rngs=nnx.Rngs(dropout=5)),
        modes,
    )
    ref = _all_modes(model, lambda m: m(x, ids, periodic=periodic), modes if inference else [])
    assert not np.allclose(ref[1], train[1])


def test_a_scanned_stack_traces_its_block_once():
    traced = []

    class Counting(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(4, 4, rngs=rngs)

        def __call__(self, x):
            traced.append(1)
            return x + self.lin(x)

    rngs = nnx.Rngs(0)
    blocks = [Counting(rngs) for _ in range(6)]
    x = jnp.ones((2, 4))
    run_stack(blocks, x, lambda b, h, _: b(h), scan=True)
    assert len(traced) == 1
    traced.clear()
    run_stack(blocks, x, lambda b, h, _: b(h), scan=False)
    assert len(traced) == 6


def test_blocks_that_differ_in_static_settings_cannot_scan():
    class Scaled(nnx.Module):
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x * self.k

    blocks = [Scaled(1.0), Scaled(2.0)]
    with pytest.raises(ValueError, match="block 1 differs.*scan_layers=False"):
        run_stack(blocks, jnp.ones(3), lambda b, h, _: b(h), scan=True)
    out = run_stack(blocks, jnp.ones(3), lambda b, h, _: b(h), scan=False)
    np.testing.assert_allclose(out, 2.0)
    with pytest.raises(ValueError, match="unknown remat 'some'"):
        run_stack(blocks, jnp.ones(3), lambda b, h, _: b(h), remat="some")


def test_checkpoints_restore_across_scanned_and_unrolled(tmp_path):
    """The stack is stored one module per block either way: an unrolled model's checkpoint
    restores into a scanned model (and back) and both predict the same."""
    from jaxfm.ckpt import Checkpointer

    seed = _fresh_seed()
    unrolled = AViT(
        avit_config("smoke", depth=2, delta=False, scan_layers=False), rngs=nnx.Rngs(seed)
    )
    scanned = AViT(
        avit_config("smoke", depth=2, delta=False, scan_layers=True), rngs=nnx.Rngs(seed + 1)
    )
    x = jax.random.normal(jax.random.key(seed), (1, 2, 16, 16, 2))
    ids = jnp.array([[0, 1]])
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(1, nnx.to_pure_dict(nnx.state(unrolled, nnx.Param)))
    ckpt.wait()
    abstract = jax.eval_shape(lambda: nnx.to_pure_dict(nnx.state(scanned, nnx.Param)))
    _, restored, _ = ckpt.restore(abstract)
    ckpt.close()
    assert not np.allclose(scanned(x, ids), unrolled(x, ids))  # different init before
    nnx.update(scanned, restored)
    np.testing.assert_allclose(scanned(x, ids), unrolled(x, ids), rtol=1e-5, atol=1e-6)


def test_a_run_may_resume_with_scan_layers_or_remat_changed(tmp_path):
    import json

    from jaxfm.config import to_dict
    from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment
    from jaxfm.train import ConfigMismatchError
    from jaxfm.train.loop import _check_same_run

    cfg = SurrogateExperiment()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(to_dict(cfg)))

    def with_avit(**kw):
        avit = dataclasses.replace(cfg.model.avit, **kw)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, avit=avit))

    _check_same_run(str(path), with_avit(scan_layers=not cfg.model.avit.scan_layers, remat="full"))
    with pytest.raises(ConfigMismatchError, match="model.avit.depth"):
        _check_same_run(str(path), with_avit(depth=cfg.model.avit.depth + 1))


def test_a_stack_without_randomness_takes_nothing_from_the_callers_rngs():
    x = jnp.ones((1, 4, 16))
    for drop_path, dropout, draws in ((0.0, 0.0, 0), (0.0, 0.1, 1), (0.2, 0.0, 1)):
        cfg = TrunkConfig(depth=2, dim=16, drop_path=drop_path, mlp=MLPConfig(dropout=dropout))
        rngs = nnx.Rngs(dropout=0)
        Trunk(cfg, rngs=nnx.Rngs(1))(x, deterministic=False, rngs=rngs)
        assert int(rngs.dropout.count[...]) == draws, (drop_path, dropout)
