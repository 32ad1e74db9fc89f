"""On a CUDA GPU (``make test-gpu``): every attention impl, compiled, against the float64 oracle.

The CPU suite checks the Pallas and Mosaic GPU kernels in their interpreters; this runs them
(and cuDNN, and XLA as the control) compiled on the GPU, through the models' entry point, on
three cases (head dims 64 and 128, causal, key padding, an additive bias like the AViT's),
forward and backward. Each case also reads the compiled program: the fused call must be in it, so a
silent fallback to XLA fails. Skipped (with the reason) where jax has no GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.nn import attention as attn
from kernels.cuda_lowering import CUDNN_ATTENTION, MOSAIC_GPU, PALLAS_TRITON, custom_calls
from tests.kernels.cases import rng_for
from tests.kernels.numpy_oracle import attention_backward, attention_forward

CASES = {
    "d64-causal": dict(b=2, l=512, h=4, d=64, causal=True, padding=False, bias=False),
    "d128-padding": dict(b=2, l=384, h=4, d=128, causal=False, padding=True, bias=False),
    "d64-bias": dict(b=8, l=32, h=3, d=64, causal=False, padding=False, bias=True),
}
EXPECTED_CALLS = {
    "pallas": {PALLAS_TRITON},
    "mosaic": {MOSAIC_GPU},
    "cudnn": set(CUDNN_ATTENTION),
    "xla": set(),
}


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["xla", "cudnn", "pallas", "mosaic"])
@pytest.mark.parametrize("name", list(CASES))
def test_attention_impl_matches_oracle_on_gpu(impl, name, request):
    c = CASES[name]
    seed, rng = rng_for(request)
    shape = (c["b"], c["l"], c["h"], c["d"])
    q, k, v, do = (jnp.asarray(rng.standard_normal(shape), jnp.bfloat16) for _ in range(4))
    kw = dict(causal=c["causal"], impl=impl)
    q_seg = kv_seg = None
    if c["padding"]:
        lengths = rng.integers(c["l"] // 2, c["l"] + 1, c["b"])
        keep = np.arange(c["l"])[None] < lengths[:, None]
        kw["key_padding_mask"] = jnp.asarray(keep)
        q_seg, kv_seg = np.zeros((c["b"], c["l"]), int), np.where(keep, 0, 1)
    bias = None
    if c["bias"]:
        bias = jnp.asarray(rng.standard_normal((1, c["h"], c["l"], c["l"])), jnp.bfloat16)

    def f(q, k, v, *b):
        return attn.dot_product_attention(q, k, v, bias=b[0] if b else None, **kw)

    args = (q, k, v) + (() if bias is None else (bias,))

    def fwd_bwd(*a):
        out, vjp = jax.vjp(f, *a)
        return out, vjp(do)

    lowered = jax.jit(fwd_bwd).lower(*args)
    calls = set(custom_calls(lowered.as_text()))
    want = EXPECTED_CALLS[impl]
    assert not want or calls & want, f"{impl} fell back: custom calls {sorted(calls)}"
    out, grads = lowered.compile()(*args)
    ref_kw = dict(causal=c["causal"], q_seg=q_seg, kv_seg=kv_seg, bias=bias)
    ref_out, _ = attention_forward(q, k, v, **ref_kw)
    refs = attention_backward(q, k, v, do, **ref_kw)
    # bf16 tolerances of Triton's fused-attention tutorial and jax's Pallas mha tests.
    msg = f"impl={impl} case={name} seed={seed}"
    np.testing.assert_allclose(np.asarray(out, np.float64), ref_out, atol=2e-2, err_msg=msg)
    names = ("dq", "dk", "dv", "dbias")
    for n, g, r in zip(names, grads, refs):
        np.testing.assert_allclose(np.asarray(g, np.float64), r, atol=5e-2, err_msg=f"{n} {msg}")
