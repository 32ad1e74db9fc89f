"""The jax-triton wrapper: version shims (CPU, with a stand-in module) and, on a GPU, numerics.

``triton_call`` has no CPU lowering, so on CPU only the compatibility logic is testable: the
``out_shape``/``out_type`` keyword choice and the DCE-rule arity patch for jax >= 0.12. Where
jax_triton is installed, the full custom_vjp graph is also traced (4 kernel calls for a
gradient), which is exactly where jax-triton 0.4.1 fails on jax 0.12 without the patch.
"""

from __future__ import annotations

import inspect
import re
import types

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.interpreters import partial_eval as pe

from kernels.flash_attention import triton as fa_triton
from tests.kernels.cases import rng_for
from tests.kernels.numpy_oracle import attention_backward, attention_forward


def _fake_jt(keyword):
    calls = []

    if keyword == "out_type":

        def triton_call(*args, kernel, out_type=None, grid, num_warps=None, num_stages=None, **kw):
            calls.append(("out_type", out_type, kw))
            return out_type
    else:

        def triton_call(*args, kernel, out_shape, grid, num_warps=None, num_stages=None, **kw):
            calls.append(("out_shape", out_shape, kw))
            return out_shape

    return types.SimpleNamespace(triton_call=triton_call), calls


@pytest.mark.parametrize("keyword", ["out_type", "out_shape"])
def test_triton_call_shim_picks_the_output_keyword(monkeypatch, keyword):
    jt, calls = _fake_jt(keyword)
    monkeypatch.setattr(fa_triton, "_jax_triton", lambda: jt)
    spec = jax.ShapeDtypeStruct((2,), jnp.float32)
    bs = fa_triton.get_block_sizes("triton", 64)
    out = fa_triton._triton_call(1, kernel=None, out=spec, grid=(1,), block_sizes=bs, BLOCK=16)
    assert out is spec and calls == [(keyword, spec, {"BLOCK": 16})]


def test_scalars_reach_triton_as_float32(monkeypatch):
    """jax-triton 0.3.1 types a Python float as fp64, which makes the kernel's loop-carried
    statistics fp64 and fails to compile: the scale must arrive as np.float32."""
    seen = []

    def triton_call(*args, kernel, out_type, grid, num_warps=None, num_stages=None, **kw):
        seen.append(args)
        return tuple(jnp.zeros(s.shape, s.dtype) for s in out_type)

    kernels = types.SimpleNamespace(  # the triton kernels themselves are not needed here
        flash_fwd_kernel=None, head_dim_tile=lambda d: d, dot_precision=lambda dtype: "ieee"
    )
    monkeypatch.setattr(fa_triton, "_tk", lambda: kernels)
    monkeypatch.setattr(
        fa_triton, "_jax_triton", lambda: types.SimpleNamespace(triton_call=triton_call)
    )
    q = jnp.ones((1, 32, 2, 64), jnp.bfloat16)
    fa_triton.flash_attention_triton(q, q, q, scale=0.125)
    (args,) = seen
    floats = [a for a in args if not hasattr(a, "shape") or np.ndim(a) == 0]
    scale = [a for a in floats if isinstance(a, (float, np.floating))]
    assert len(scale) == 1 and type(scale[0]) is np.float32 and scale[0] == 0.125


def test_dce_rule_patch_adapts_two_argument_rules():
    prim = jax.extend.core.Primitive("fake_triton_kernel_call")
    seen = []

    def rule2(used_outs, eqn):
        seen.append((used_outs, eqn))
        return [True], eqn

    pe.dce_rules[prim] = rule2
    jt = types.SimpleNamespace(triton_lib=types.SimpleNamespace(triton_kernel_call_p=prim))
    try:
        fa_triton._patch_dce_rule(jt)
        patched = pe.dce_rules[prim]
        if len(inspect.signature(pe._default_dce_rule).parameters) == 3:  # jax >= 0.12
            assert len(inspect.signature(patched).parameters) == 3
            assert patched([False], [True], "eqn") == ([True], "eqn")
            assert seen == [([False], "eqn")]
            fa_triton._patch_dce_rule(jt)  # idempotent
            assert pe.dce_rules[prim] is patched
        else:  # older jax: the 2-argument convention is right, nothing changes
            assert patched is rule2
    finally:
        del pe.dce_rules[prim]


def test_gradient_graph_traces_through_jax_triton():
    pytest.importorskip("jax_triton")
    q = jnp.ones((1, 40, 4, 64), jnp.bfloat16)
    k = jnp.ones((1, 40, 2, 64), jnp.bfloat16)

    def loss(q, k, v):
        return fa_triton.flash_attention_triton(q, k, v, causal=True).astype(jnp.float32).sum()

    jaxpr = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, k, k))
    # forward, delta preprocess, dq, dk/dv: equations, not mentions (jax 0.11 prints the
    # primitive's name among its parameters too)
    assert len(re.findall(r"\btriton_kernel_call\[", jaxpr)) == 4, jaxpr
    if jax.default_backend() != "gpu":
        # DCE runs during lowering: with the patch the only failure left is the platform.
        with pytest.raises(NotImplementedError, match="platform cpu"):
            jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, k)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_matches_oracle_on_gpu(dtype, causal, request):
    """Numerics of the jax-triton path on a CUDA GPU (``make test-gpu``)."""
    seed, rng = rng_for(request)
    b, lq, h, hkv, d = 2, 257, 4, 2, 128
    q, k, v, do = (jnp.asarray(rng.standard_normal((b, lq, n, d)), dtype) for n in (h, hkv, hkv, h))
    out, vjp = jax.vjp(
        lambda q, k, v: fa_triton.flash_attention_triton(q, k, v, causal=causal), q, k, v
    )
    grads = vjp(do)
    ref_out, _ = attention_forward(q, k, v, causal=causal)
    refs = attention_backward(q, k, v, do, causal=causal)
    # The tolerances Triton's fused-attention tutorial and jax's Pallas mha tests use for fp16/bf16
    # (1e-2 forward, a few 1e-2 for gradients, here with unit-normal inputs and L = 257); the CPU
    # interpreter tests hold the same kernels to the stricter 2x-naive rule.
    msg = f"dtype={dtype} causal={causal} shape=(b{b}, l{lq}, h{h}/{hkv}, d{d}) seed={seed}"
    np.testing.assert_allclose(np.asarray(out, np.float64), ref_out, atol=2e-2, err_msg=msg)
    for name, g, r in zip(("dq", "dk", "dv"), grads, refs):
        np.testing.assert_allclose(np.asarray(g, np.float64), r, atol=5e-2, err_msg=f"{name} {msg}")
