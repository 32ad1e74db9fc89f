"""The GPU paths of attention, lowered for CUDA on this CPU machine, hold the fused calls.

A kernel that silently falls back to XLA still runs and still gives the right numbers, so
these tests read the lowered program (``kernels.cuda_lowering``): a named kernel must be
there when the call is lowered for CUDA, and absent (XLA, or Pallas' interpreter) when the
same function runs here.
"""

import logging

import jax
import jax.numpy as jnp
import pytest

from jaxfm.nn import attention as attn
from kernels.cuda_lowering import (
    CUDNN_ATTENTION,
    MOSAIC_GPU,
    PALLAS_TRITON,
    TRITON_CALL,
    custom_calls,
    lower_for_cuda,
)
from kernels.flash_attention import ops

Q = jax.ShapeDtypeStruct((2, 128, 4, 64), jnp.bfloat16)


@pytest.fixture
def fresh_log_once(monkeypatch):
    """Forget the reasons earlier tests in this process logged, so this test sees them all."""
    monkeypatch.setattr(ops, "_logged", set())


def _fwd(impl, **kw):
    return lambda q, k, v: attn.dot_product_attention(q, k, v, impl=impl, **kw)


def _grad(impl, **kw):
    f = _fwd(impl, **kw)
    return jax.grad(lambda q, k, v: jnp.sum(f(q, k, v).astype(jnp.float32)), argnums=(0, 1, 2))


def test_pallas_is_the_kernel_when_lowered_for_cuda_forward_and_backward():
    fwd = custom_calls(lower_for_cuda(_fwd("pallas", causal=True), Q, Q, Q))
    assert fwd[PALLAS_TRITON] == 1, fwd
    # the backward: forward (for the residuals) + the dK/dV and dQ kernels
    bwd = custom_calls(lower_for_cuda(_grad("pallas", causal=True), Q, Q, Q))
    assert bwd[PALLAS_TRITON] == 3, bwd
    # key padding reaches the kernel too (as segment ids), no XLA fallback
    mask = jax.ShapeDtypeStruct((2, 128), jnp.bool_)
    padded = custom_calls(
        lower_for_cuda(
            lambda q, k, v, m: attn.dot_product_attention(
                q, k, v, impl="pallas", key_padding_mask=m
            ),
            Q,
            Q,
            Q,
            mask,
        )
    )
    assert padded[PALLAS_TRITON] == 1, padded


def test_the_same_function_run_here_takes_no_gpu_call():
    for impl in ("pallas", "mosaic", "cudnn", "auto", "xla"):
        text = jax.jit(_grad(impl)).lower(Q, Q, Q).as_text()
        assert not set(custom_calls(text)) & {PALLAS_TRITON, MOSAIC_GPU, *CUDNN_ATTENTION}, impl


def test_mosaic_is_the_kernel_when_lowered_for_cuda_with_every_mask_and_the_bias():
    """Forward 1 Mosaic GPU call; gradient 3 (forward, dQ, dK/dV); key padding (as segment
    ids), GQA, causal and a learned bias all reach it."""
    kv = jax.ShapeDtypeStruct((2, 128, 2, 64), jnp.bfloat16)
    assert custom_calls(lower_for_cuda(_fwd("mosaic", causal=True), Q, kv, kv))[MOSAIC_GPU] == 1
    assert custom_calls(lower_for_cuda(_grad("mosaic", causal=True), Q, kv, kv))[MOSAIC_GPU] == 3
    bias = jax.ShapeDtypeStruct((1, 4, 128, 128), jnp.float32)
    mask = jax.ShapeDtypeStruct((2, 128), jnp.bool_)

    def g(q, k, v, b, m):
        def f(q, k, v, b):
            out = attn.dot_product_attention(q, k, v, bias=b, key_padding_mask=m, impl="mosaic")
            return jnp.sum(out.astype(jnp.float32))

        return jax.grad(f, argnums=(0, 1, 2, 3))(q, k, v, b)

    calls = custom_calls(lower_for_cuda(g, Q, kv, kv, bias, mask))
    assert calls[MOSAIC_GPU] == 3 and not calls[PALLAS_TRITON], calls
    q128 = jax.ShapeDtypeStruct((1, 200, 2, 128), jnp.float16)  # ragged, D 128, fp16
    assert custom_calls(lower_for_cuda(_grad("mosaic"), q128, q128, q128))[MOSAIC_GPU] == 3


def test_what_mosaic_cannot_take_falls_back_to_xla_for_cuda(caplog, fresh_log_once):
    f32 = jax.ShapeDtypeStruct((1, 64, 2, 64), jnp.float32)
    d88 = jax.ShapeDtypeStruct((1, 64, 2, 88), jnp.bfloat16)
    with caplog.at_level(logging.WARNING, logger=attn.__name__):
        for q in (f32, d88):
            calls = custom_calls(lower_for_cuda(_fwd("mosaic"), q, q, q))
            assert not calls[MOSAIC_GPU], calls
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "mosaic takes bf16/fp16 only" in messages and "head_dim (64, 128) (got 88)" in messages


def test_pallas_takes_the_additive_bias_and_its_gradient_for_cuda():
    bias = jax.ShapeDtypeStruct((1, 4, 128, 128), jnp.float32)

    def f(q, k, v, b):
        return attn.dot_product_attention(q, k, v, bias=b, impl="pallas")

    def g(q, k, v, b):
        return jax.grad(lambda *a: jnp.sum(f(*a).astype(jnp.float32)), argnums=(0, 1, 2, 3))(
            q, k, v, b
        )

    assert custom_calls(lower_for_cuda(f, Q, Q, Q, bias))[PALLAS_TRITON] == 1
    assert custom_calls(lower_for_cuda(g, Q, Q, Q, bias))[PALLAS_TRITON] == 3


def test_what_pallas_cannot_take_falls_back_to_xla_for_cuda_too():
    mask = jax.ShapeDtypeStruct((1, 1, 128, 128), jnp.bool_)
    text = lower_for_cuda(
        lambda q, k, v, m: attn.dot_product_attention(q, k, v, mask=m, impl="pallas"),
        Q,
        Q,
        Q,
        mask,
    )
    assert PALLAS_TRITON not in custom_calls(text)


def test_the_avit_train_step_reaches_the_pallas_kernel_for_cuda():
    """Every attention of the AViT carries its relative-position bias; with the bias in the
    kernel, the lowered gradient holds 3 Pallas calls per attention (time, space H, space W)
    and block: no silent XLA fallback."""
    from flax import nnx

    from jaxfm.models.surrogate import AViT, avit_config

    cfg = avit_config("smoke", depth=2, attn_impl="pallas")
    graphdef, state = nnx.split(AViT(cfg, rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((2, 3, 16, 16, 2), jnp.float32)
    ids = jnp.array([0, 1])

    def loss_grad(state, x):
        def loss(s):
            return jnp.mean(nnx.merge(graphdef, s)(x, ids, periodic=(True, False)) ** 2)

        return jax.grad(loss)(state)

    calls = custom_calls(lower_for_cuda(loss_grad, state, x))
    assert calls[PALLAS_TRITON] == 3 * 3 * cfg.depth, calls


def _bf16_model_grad(name: str, impl: str):
    """(gradient function, its arguments, attentions per step) for a bf16 train step of the
    AViT (its relative-position bias on every attention) or the ViT encoder; head_dim 64 and
    parameters cast in the loss, as the training engine does."""
    from flax import nnx

    from jaxfm.models.surrogate import AViT, avit_config
    from jaxfm.models.vit import ViT, ViTConfig
    from jaxfm.nn.params import cast_floats, fp32_mask
    from jaxfm.nn.trunk import AttentionConfig, TrunkConfig

    if name == "avit":
        cfg = avit_config("smoke", dim=128, heads=2, depth=2, attn_impl=impl)
        model = AViT(cfg, rngs=nnx.Rngs(0))
        # T 4: cuDNN takes a bias only with even lengths (an odd T falls back, logged)
        x = jax.ShapeDtypeStruct((2, 4, 16, 16, 2), jnp.bfloat16)
        ids = jnp.array([0, 1])

        def call(m, x):
            return m(x, ids, periodic=(True, False))

        attentions = 3 * cfg.depth  # time, space (H), space (W) per block
    else:
        trunk = TrunkConfig(depth=2, dim=128, attention=AttentionConfig(heads=2, attn_impl=impl))
        model = ViT(ViTConfig(image_size=16, patch=4, channels=3, trunk=trunk), rngs=nnx.Rngs(0))
        x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.bfloat16)

        def call(m, x):
            return m(x)

        attentions = trunk.depth
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    keep = fp32_mask(params)

    def loss_grad(params, x):
        def loss(p):
            m = nnx.merge(graphdef, cast_floats(p, jnp.bfloat16, keep), rest)
            return jnp.mean(call(m, x).astype(jnp.float32) ** 2)

        return jax.grad(loss)(params)

    return loss_grad, (nnx.to_pure_dict(params), x), attentions


FUSED = {"pallas": (PALLAS_TRITON,), "mosaic": (MOSAIC_GPU,), "cudnn": CUDNN_ATTENTION}


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated:DeprecationWarning")
@pytest.mark.parametrize("impl", ["pallas", "mosaic", "cudnn"])
@pytest.mark.parametrize("model", ["avit", "vit"])
def test_the_bf16_train_step_reaches_the_fused_kernel_for_cuda(model, impl):
    """Each attention of the lowered bf16 train step is a fused kernel: 3 Pallas or Mosaic
    calls (forward, dQ, dK/dV), or cuDNN's forward and backward, per attention; no XLA
    fallback and no other kernel. cuDNN needs jax's CUDA plugin to be traced at all."""
    if impl == "cudnn" and (why := attn._cudnn_untraceable()) is not None:
        pytest.skip(why)
    grad, args, attentions = _bf16_model_grad(model, impl)
    calls = custom_calls(lower_for_cuda(grad, *args))
    fused = {t: n for t, n in calls.items() if t in (PALLAS_TRITON, MOSAIC_GPU, *CUDNN_ATTENTION)}
    if impl == "cudnn":
        assert set(fused) <= set(CUDNN_ATTENTION), calls
        assert sum(n for t, n in fused.items() if "Backward" in t) == attentions, calls
    else:
        assert fused == {FUSED[impl][0]: 3 * attentions}, calls


def test_triton_call_compiles_when_lowered_for_cuda():
    """jax-triton compiles the kernels while lowering, with the argument types it infers (a
    Python-float scale would be fp64 and fail, as it did on jax-triton 0.3.1 / triton 3.6):
    4 kernel calls for the gradient (forward, delta, dq, dk/dv). jax-triton imports only
    where jax's CUDA plugin is installed (``make test-lowering``)."""
    pytest.importorskip("jax_triton", reason="jax-triton needs jax's CUDA plugin to import")
    kv = jax.ShapeDtypeStruct((2, 128, 2, 64), jnp.bfloat16)
    calls = custom_calls(lower_for_cuda(_grad("triton", causal=True), Q, kv, kv))
    assert calls[TRITON_CALL] == 4, calls
    assert custom_calls(lower_for_cuda(_fwd("triton"), Q, kv, kv))[TRITON_CALL] == 1


def test_cudnn_when_lowered_for_cuda_or_a_logged_reason(caplog, fresh_log_once):
    """cuDNN's path can be traced only where jax's CUDA plugin is installed; without it the
    fallback is logged with that reason (never silent)."""
    with caplog.at_level(logging.INFO, logger=attn.__name__):
        calls = custom_calls(lower_for_cuda(_grad("cudnn"), Q, Q, Q))
    untraceable = attn._cudnn_untraceable()
    if untraceable is None:
        assert calls["__cudnn$fmhaSoftmax"] >= 1 and calls["__cudnn$fmhaSoftmaxBackward"] == 1
    else:
        assert not set(calls) & set(CUDNN_ATTENTION)
        messages = [r.getMessage() for r in caplog.records]
        assert f"attention impl=cudnn unavailable: {untraceable}; falling back" in messages


def test_cudnn_with_a_bias_and_an_odd_length_falls_back_with_the_reason(caplog, fresh_log_once):
    """cuDNN refuses a bias with an odd sequence length when differentiated, at lowering time
    (the AViT's time axis with 3 input steps): the dispatch passes it over instead."""
    q = jax.ShapeDtypeStruct((2, 3, 2, 64), jnp.bfloat16)
    bias = jax.ShapeDtypeStruct((1, 2, 3, 3), jnp.bfloat16)

    def f(q, k, v, b):
        return attn.dot_product_attention(q, k, v, bias=b, impl="cudnn")

    with caplog.at_level(logging.WARNING, logger=attn.__name__):
        calls = custom_calls(lower_for_cuda(f, q, q, q, bias))
    assert not set(calls) & set(CUDNN_ATTENTION), calls
    messages = [r.getMessage() for r in caplog.records]
    assert any("cudnn takes a bias only with even lengths (got Lq 3, Lk 3)" in m for m in messages)


def test_float32_cudnn_and_long_head_dims_fall_back_for_cuda_too():
    f32 = jax.ShapeDtypeStruct((1, 64, 2, 64), jnp.float32)  # cuDNN: bf16/fp16 only
    wide = jax.ShapeDtypeStruct((1, 64, 2, 512), jnp.bfloat16)  # the kernels: D <= 256
    for impl, q in (("cudnn", f32), ("pallas", wide)):
        calls = custom_calls(lower_for_cuda(_fwd(impl), q, q, q))
        assert not set(calls) & {PALLAS_TRITON, *CUDNN_ATTENTION}, (impl, calls)
