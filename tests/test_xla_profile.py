"""jaxfm.xla_profile: HLO instructions are classed by what they compute, and a profiled call's
op time lands in the right class."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from jaxfm.xla_profile import CATEGORIES, breakdown, classify


def test_classify_reads_fusions_and_plain_ops():
    def f(a, b):
        return jnp.tanh(a @ b), jnp.sum(jnp.exp(a), axis=0), a.T.copy()

    a = jnp.ones((64, 64))
    kinds = classify(jax.jit(f).lower(a, a).compile().as_text())
    assert set(kinds.values()) <= set(CATEGORIES)
    assert "matmul" in kinds.values() and "reduction" in kinds.values()
    # the unoptimised module: one instruction per primitive, classed by its opcode
    text = jax.jit(f).lower(a, a).as_text(dialect="hlo")
    raw = classify(text)
    expect = {"dot": "matmul", "reduce": "reduction", "transpose": "data movement"}
    expect["tanh"] = "element-wise"
    found = re.findall(r"^\s*(?:ROOT )?([\w.\-]+) = \S+ (dot|reduce|transpose|tanh)\(", text, re.M)
    assert {op for _, op in found} == set(expect), text
    for name, op in found:
        assert raw[name] == expect[op], (name, op, raw)


def test_a_matmul_heavy_call_spends_its_op_time_on_matmuls():
    a = jax.random.normal(jax.random.key(0), (384, 384))
    compiled = jax.jit(lambda a: (a @ a @ a).sum()).lower(a).compile()
    compiled(a).block_until_ready()
    p = breakdown(lambda: compiled(a), compiled.as_text(), steps=3)
    assert p["n_ops"] >= 1 and p["wall_s"] > 0
    np.testing.assert_allclose(sum(p["by_category_s"].values()), p["ops_s"], rtol=1e-9)
    assert p["by_category_s"]["matmul"] > 0.5 * p["ops_s"], p
    assert p["top_ops"][0]["category"] == "matmul"
