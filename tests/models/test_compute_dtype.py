"""The bf16 compute policy is real: the lowered gradient's matmuls run in bf16.

The training engine keeps parameters float32 and casts them (and the batch) to the compute
dtype inside the loss (``jaxfm.nn.params.cast_floats`` with ``fp32_mask``). A layer that
upcasts its activations would silently turn the following matmuls back into float32; this
reads the lowered program (``jaxfm.provenance.dot_dtypes``) for the AViT and the ViT encoder,
in each block mode, and checks the loss stays within bf16 tolerance of float32.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.surrogate import AViT, avit_config
from jaxfm.models.vit import ViT, ViTConfig
from jaxfm.nn.params import cast_floats, fp32_mask
from jaxfm.nn.trunk import TrunkConfig
from jaxfm.provenance import dot_dtypes


def _avit(scan):
    model = AViT(avit_config("smoke", depth=2, delta=False, scan_layers=scan), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 3, 16, 16, 2))
    return model, x, lambda m, x: m(x, jnp.array([0, 1]), periodic=(True, False))


def _vit(scan):
    cfg = ViTConfig(image_size=16, patch=4, channels=3)
    cfg = dataclasses.replace(cfg, trunk=TrunkConfig(depth=2, dim=32, scan_layers=scan))
    model = ViT(cfg, rngs=nnx.Rngs(0))
    return model, jax.random.normal(jax.random.key(1), (2, 16, 16, 3)), lambda m, x: m(x)


def _loss_fn(model, call, dtype):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    keep = fp32_mask(params)

    def loss(params, x):
        m = nnx.merge(graphdef, cast_floats(params, dtype, keep), rest)
        return jnp.mean(call(m, x.astype(dtype)).astype(jnp.float32) ** 2)

    return loss, nnx.to_pure_dict(params)


@pytest.mark.parametrize("build", [_avit, _vit], ids=["avit", "vit"])
@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_bf16_policy_runs_the_matmuls_in_bf16(build, scan):
    model, x, call = build(scan)
    loss16, params = _loss_fn(model, call, jnp.bfloat16)
    text = jax.jit(jax.value_and_grad(loss16)).lower(params, x).as_text()
    dots = dot_dtypes(text)
    total = sum(dots.values())
    assert total > 0 and dots.get("f32xf32", 0) == 0, dots
    # What may stay float32: one operand of the products through softmax's float32
    # statistics (jax.nn computes the softmax and its gradient in float32).
    assert dots.get("bf16xbf16", 0) >= 0.85 * total, dots
    loss32, _ = _loss_fn(model, call, jnp.float32)
    v16, v32 = float(jax.jit(loss16)(params, x)), float(jax.jit(loss32)(params, x))
    np.testing.assert_allclose(v16, v32, rtol=5e-2)
    assert v16 != v32  # the cast happened


def test_dot_dtypes_reads_operand_dtypes():
    def f(a, b):
        return a @ b, a.astype(jnp.float32) @ b.astype(jnp.float32)

    a = jnp.ones((4, 8), jnp.bfloat16)
    text = jax.jit(f).lower(a, a.T).as_text()
    assert dot_dtypes(text) == {"bf16xbf16": 1, "f32xf32": 1}
