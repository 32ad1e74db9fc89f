"""Bad or degenerate arguments to the numerical APIs: a clear ValueError naming the argument and
its shape, or the mathematically defined result (empty inputs), never a silent wrong answer.

Covers attention (mask and segment-id shapes, negative ids, zero-size axes, float64), the
selective scan and SSD (zero lengths and chunks), the MoE load-balancing loss (1-D routing)
and the contrastive losses (empty batches).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.nn import attention as attn
from kernels.flash_attention import ops
from kernels.flash_attention.pallas import flash_attention_pallas
from kernels.flash_attention.reference import attention_reference
from tests.kernels.numpy_oracle import attention_forward

IMPLS = ["xla", "pallas"]


def _qkv(b=1, lq=4, lk=6, h=2, hkv=1, d=8, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, lq, h, d)).astype(dtype)
    k = rng.standard_normal((b, lk, hkv, d)).astype(dtype)
    v = rng.standard_normal((b, lk, hkv, d)).astype(dtype)
    return q, k, v


# ------------------------------------------------------------------ mask / segment-id shapes

_SHAPE_CASES = {
    "padding_short": (dict(key_padding_mask=np.ones((1, 4), bool)), "key_padding_mask", "(1, 4)"),
    "padding_long": (dict(key_padding_mask=np.ones((1, 8), bool)), "key_padding_mask", "(1, 8)"),
    "padding_batch": (dict(key_padding_mask=np.ones((2, 6), bool)), "key_padding_mask", "(2, 6)"),
    "kv_ids_short": (
        dict(segment_ids=(np.zeros((1, 4), np.int32), np.zeros((1, 5), np.int32))),
        r"segment_ids\[1\]",
        "(1, 5)",
    ),
    "kv_ids_long": (
        dict(segment_ids=(np.zeros((1, 4), np.int32), np.zeros((1, 9), np.int32))),
        r"segment_ids\[1\]",
        "(1, 9)",
    ),
    "q_ids_short": (
        dict(segment_ids=(np.zeros((1, 3), np.int32), np.zeros((1, 6), np.int32))),
        r"segment_ids\[0\]",
        "(1, 3)",
    ),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", sorted(_SHAPE_CASES))
def test_mask_and_segment_ids_of_the_wrong_shape_are_refused(case, impl):
    """A short kv mask used to leave the uncovered keys visible (pallas), a long one was cut."""
    kwargs, name, shape = _SHAPE_CASES[case]
    q, k, v = _qkv()
    pattern = rf"{name} has shape {re.escape(shape)} but \w has shape .*must be \(B, L\w\)"
    with pytest.raises(ValueError, match=pattern):
        attn.dot_product_attention(q, k, v, impl=impl, **kwargs)


def test_self_attention_segment_ids_of_the_wrong_length_are_refused():
    q, k, v = _qkv(lq=6)
    with pytest.raises(ValueError, match=r"segment_ids has shape \(1, 5\) but q has shape"):
        attn.dot_product_attention(q, k, v, segment_ids=np.zeros((1, 5), np.int32))


@pytest.mark.parametrize(
    "fn",
    [
        lambda q, k, v, **kw: flash_attention_pallas(q, k, v, **kw),
        lambda q, k, v, **kw: attention_reference(q, k, v, **kw),
        lambda q, k, v, **kw: ops.flash_attention(q, k, v, impl="pallas", **kw),
    ],
    ids=["pallas", "reference", "ops"],
)
def test_kernel_entry_points_check_segment_id_shapes(fn):
    q, k, v = _qkv()
    ids = dict(q_segment_ids=jnp.zeros((1, 4), jnp.int32), kv_segment_ids=jnp.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"kv_segment_ids has shape \(1, 5\) but k has shape"):
        fn(q, k, v, **ids)


# ------------------------------------------------------------------ negative segment ids


def test_negative_concrete_segment_ids_are_refused():
    q, k, v = _qkv(lk=4)
    ids = np.array([[0, 1, -1, 1]], np.int32)
    with pytest.raises(ValueError, match="segment_ids must be >= 0, got a minimum of -1"):
        attn.dot_product_attention(q, k, v, segment_ids=ids)
    with pytest.raises(ValueError, match="segment_ids must be >= 0"):
        attn.dot_product_attention(q, k, v, segment_ids=(np.zeros((1, 4), np.int32), ids))


@pytest.mark.parametrize("impl", IMPLS)
def test_traced_negative_ids_never_see_padded_keys(impl):
    """Under jit ids cannot be checked; the padding id must still be one no query carries.

    A fixed padding id of -1 made the padded keys visible to every query with id -1.
    """
    q, k, v = _qkv(lq=4, lk=4)
    ids = np.array([[-1, -1, 0, 0]], np.int32)
    pad = np.array([[True, False, True, False]])
    f = jax.jit(
        lambda q, k, v, ids, pad: attn.dot_product_attention(
            q, k, v, segment_ids=ids, key_padding_mask=pad, impl=impl
        )
    )
    out = np.asarray(f(q, k, v, ids, pad))
    info = np.iinfo(np.int32)
    kv_seg = np.where(pad, ids, info.max)  # an id no query has: padded keys are invisible
    ref, _ = attention_forward(q, k, v, q_seg=ids, kv_seg=kv_seg)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "ids",
    [
        [[0, 1, 2]],
        [[-1, 5, 7]],
        [[np.iinfo(np.int32).min, -1, 4]],
        [[np.iinfo(np.int32).min, np.iinfo(np.int32).max, -1]],
        [[np.iinfo(np.int32).min, np.iinfo(np.int32).max, np.iinfo(np.int32).min + 1]],
    ],
    ids=["from_zero", "negative", "int32_min", "both_extremes", "gap_after_min_plus_one"],
)
def test_padding_id_is_absent_from_the_query_ids(ids):
    from kernels.flash_attention.reference import segments_from_padding

    ids = jnp.asarray(ids, jnp.int32)
    pad = jnp.array([[True, True, False]])
    q_seg, kv_seg = jax.jit(lambda p, i: segments_from_padding(p, i, i, q_len=3))(pad, ids)
    assert int(kv_seg[0, 2]) not in set(np.asarray(q_seg[0]).tolist())
    np.testing.assert_array_equal(kv_seg[0, :2], ids[0, :2])


# ------------------------------------------------------------------ zero-size attention


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_kv_heads_or_head_dim_are_refused(impl):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"k\(1, 6, 0, 8\) and v\(1, 6, 0, 8\) need at least"):
        attn.dot_product_attention(q, k[:, :, :0], v[:, :, :0], impl=impl)
    with pytest.raises(ValueError, match=r"head_dim of q\(1, 4, 2, 0\) must be >= 1"):
        attn.dot_product_attention(q[..., :0], k[..., :0], v[..., :0], impl=impl)


@pytest.mark.parametrize("heads,kv_heads", [(4, 0), (0, None), (4, -2)])
def test_attention_layer_refuses_zero_heads(heads, kv_heads):
    """kv_heads=0 used to mean "as many as heads" (``kv_heads or heads``), heads=0 divided by 0."""
    from flax import nnx

    from jaxfm.nn.transformer import MultiHeadAttention

    with pytest.raises(ValueError, match="attention needs heads >= 1 and kv_heads >= 1"):
        MultiHeadAttention(16, heads, kv_heads=kv_heads, head_dim=4, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("axis", ["batch", "q_len", "kv_len"])
def test_empty_axes_give_the_defined_result(axis, impl):
    """Empty batch or queries: an empty output; no keys: every row sees none, so 0."""
    q, k, v = _qkv()
    if axis == "batch":
        q, k, v = q[:0], k[:0], v[:0]
    elif axis == "q_len":
        q = q[:, :0]
    else:
        k, v = k[:, :0], v[:, :0]
    out = attn.dot_product_attention(q, k, v, impl=impl)
    assert out.shape == q.shape and out.dtype == q.dtype
    np.testing.assert_array_equal(np.asarray(out), np.zeros(q.shape))


# ------------------------------------------------------------------ float64


def _np_attention(q, k, v, bias=None, mask=None):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    g = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, g, 2), np.repeat(v, g, 2)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        s = s + bias
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhqk,bkhd->bqhd", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("impl", ["xla", "pallas", "auto"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["plain", "bias_mask"])
def test_float64_attention_is_computed_in_float64(impl, with_bias):
    """jax.nn.dot_product_attention's softmax is float32 whatever the inputs (error ~1e-7)."""
    rng = np.random.default_rng(3)
    q, k, v = _qkv(lq=5, lk=7, h=2, hkv=1, seed=4, dtype=np.float64)
    q = q * 4.0  # peaked logits: float32 exp/normalisation errs by ~1e-7 here
    kw, bias, mask = {}, None, None
    if with_bias:
        bias = rng.standard_normal((1, 2, 5, 7))
        mask = rng.random((1, 1, 5, 7)) < 0.8
        mask[..., 0] = True
        kw = dict(bias=bias, mask=mask)
    ref = _np_attention(q, k, v, bias, mask)
    with jax.enable_x64(True):
        out = attn.dot_product_attention(q, k, v, impl=impl, **kw)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), ref, atol=1e-12, rtol=0)


def test_float64_kernel_request_falls_back_naming_impl_and_dtype(caplog, monkeypatch):
    monkeypatch.setattr(ops, "_logged", set())
    q, k, v = _qkv(dtype=np.float64)
    with jax.enable_x64(True), caplog.at_level("WARNING"):
        out = ops.flash_attention(q, k, v, impl="pallas")
    assert out.dtype == jnp.float64
    assert any("pallas unavailable: dtypes float64" in r.getMessage() for r in caplog.records)
    ref, _ = attention_forward(q, k, v)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ MoE load-balancing loss


def _np_switch_loss(logits: np.ndarray, idx: np.ndarray) -> float:
    """float64 Switch/GShard loss E · sum_e f_e P_e, f_e = share of tokens routed to e."""
    logits = np.asarray(logits, np.float64)
    t, e = logits.shape
    idx = idx.reshape(t, -1)
    f = np.zeros(e)
    for row in idx:
        for expert in row:
            f[expert] += 1.0 / t
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).mean(0)
    return float(e * np.sum(f * p))


@pytest.mark.parametrize(
    "top_k,flat", [(1, True), (1, False), (2, False)], ids=["top1_1d", "top1_2d", "top2_2d"]
)
def test_balance_loss_matches_float64_switch_reference(top_k, flat):
    """A (T,) id array is top-1 routing; it used to score E whatever the routing."""
    from jaxfm.nn.moe import balance_loss, routed_fraction

    rng = np.random.default_rng(7)
    t, e = 12, 4
    logits = (rng.standard_normal((t, e)) * 2).astype(np.float32)
    idx = np.argsort(-logits, axis=1)[:, :top_k]
    idx = idx[:, 0] if flat else idx
    got = float(balance_loss(jnp.asarray(logits), jnp.asarray(idx)))
    assert got == pytest.approx(_np_switch_loss(logits, idx), rel=1e-6)
    assert float(jnp.sum(routed_fraction(jnp.asarray(idx), e))) == pytest.approx(top_k)


def test_balance_loss_refuses_mismatched_shapes():
    from jaxfm.nn.moe import balance_loss

    logits = jnp.zeros((6, 4))
    with pytest.raises(ValueError, match=r"expert ids of shape \(5, 2\) do not match logits"):
        balance_loss(logits, jnp.zeros((5, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"expert ids must be \(T,\) or \(T, k\), got shape"):
        balance_loss(logits, jnp.zeros((6, 2, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"logits must be \(T, E\), got shape \(2, 6, 4\)"):
        balance_loss(jnp.zeros((2, 6, 4)), jnp.zeros((6,), jnp.int32))


# ------------------------------------------------------------------ selective scan and SSD


def _scan_inputs(l, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    b, d, n = 2, 3, 4
    return dict(
        x=rng.standard_normal((b, l, d)).astype(dtype),
        dt=np.log1p(np.exp(rng.standard_normal((b, l, d)))).astype(dtype),
        A=-np.exp(rng.standard_normal((d, n))).astype(dtype),
        B=rng.standard_normal((b, l, n)).astype(dtype),
        C=rng.standard_normal((b, l, n)).astype(dtype),
        D=rng.standard_normal(d).astype(dtype),
        h0=rng.standard_normal((b, d, n)).astype(dtype),
    )


@pytest.mark.parametrize("method", ["linear", "assoc", "chunked"])
def test_selective_scan_of_an_empty_sequence_returns_the_initial_state(method):
    """L = 0 used to raise ZeroDivisionError (chunked) or IndexError (assoc)."""
    from jaxfm.nn.scan import selective_scan

    inp = _scan_inputs(0)
    y, h = selective_scan(**inp, method=method)
    assert y.shape == (2, 0, 3) and y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(h), inp["h0"])


def _ssd_inputs(l, g=1, dtype=np.float32):
    rng = np.random.default_rng(1)
    b, h, p, n = 1, 2, 3, 4
    return dict(
        x=rng.standard_normal((b, l, h, p)).astype(dtype),
        dt=np.log1p(np.exp(rng.standard_normal((b, l, h)))).astype(dtype),
        A=-np.exp(rng.standard_normal(h)).astype(dtype),
        B=rng.standard_normal((b, l, g, n)).astype(dtype),
        C=rng.standard_normal((b, l, g, n)).astype(dtype),
    )


def test_ssd_of_an_empty_sequence_returns_the_initial_state():
    from jaxfm.nn.ssd import ssd

    h0 = np.random.default_rng(2).standard_normal((1, 2, 3, 4)).astype(np.float32)
    y, last = ssd(**_ssd_inputs(0), h0=h0)
    assert y.shape == (1, 0, 2, 3)
    np.testing.assert_array_equal(np.asarray(last), h0)
    _, last = ssd(**_ssd_inputs(0))
    np.testing.assert_array_equal(np.asarray(last), np.zeros((1, 2, 3, 4)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(chunk=0), "ssd: chunk must be >= 1, got 0"),
        (dict(chunk=-2), "ssd: chunk must be >= 1, got -2"),
        (dict(g=0), r"ssd: B \(1, 5, 0, 4\) and C \(1, 5, 0, 4\) need at least one group"),
    ],
    ids=["chunk0", "chunk_negative", "groups0"],
)
def test_ssd_refuses_zero_chunks_and_groups(kwargs, match):
    from jaxfm.nn.ssd import ssd

    chunk = kwargs.pop("chunk", 4)
    with pytest.raises(ValueError, match=match):
        ssd(**_ssd_inputs(5, **kwargs), chunk=chunk)


def test_mamba_mixers_refuse_a_zero_chunk():
    from flax import nnx

    from jaxfm.nn.mamba import Mamba
    from jaxfm.nn.ssd import Mamba2

    with pytest.raises(ValueError, match="Mamba: chunk must be >= 1, got 0"):
        Mamba(8, chunk=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Mamba2: chunk must be >= 1, got 0"):
        Mamba2(8, headdim=4, d_state=4, chunk=0, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("method", ["linear", "assoc", "chunked"])
def test_float64_selective_scan_is_computed_in_float64(method):
    """The scans used to cast every input to float32 (error ~1e-7 against float64)."""
    from jaxfm.nn.scan import selective_scan
    from jaxfm.nn.scan_reference import oracle_forward

    inp = _scan_inputs(9, np.float64, seed=5)
    y_ref, hs = oracle_forward(**inp)
    with jax.enable_x64(True):
        y, h = selective_scan(**inp, method=method, chunk=4)
        assert y.dtype == jnp.float64 and h.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-12, rtol=0)
        np.testing.assert_allclose(np.asarray(h), hs[-1], atol=1e-12, rtol=0)


def test_float64_ssd_is_computed_in_float64():
    from jaxfm.nn.ssd import ssd

    inp = _ssd_inputs(7, dtype=np.float64)
    x, dt, A, B, C = (inp[k] for k in ("x", "dt", "A", "B", "C"))
    state = np.zeros((1, 2, 3, 4))
    y_ref = np.zeros_like(x)
    for t in range(x.shape[1]):  # H_t = exp(dt a) H + dt x B^T, y = H C (one group)
        state = np.exp(dt[:, t] * A)[..., None, None] * state + (
            (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, 0][:, None, None, :]
        )
        y_ref[:, t] = np.einsum("bhpn,bn->bhp", state, C[:, t, 0])
    with jax.enable_x64(True):
        y, last = ssd(**inp, chunk=3)
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-12, rtol=0)
        np.testing.assert_allclose(np.asarray(last), state, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ contrastive losses


def _contrastive_fns():
    from jaxfm.tasks.contrastive import losses

    return {
        "infonce_loss": lambda a, b: losses.infonce_loss(a, b, 10.0),
        "siglip_loss": lambda a, b: losses.siglip_loss(a, b, 10.0, -10.0),
        "in_batch_accuracy": losses.in_batch_accuracy,
    }


@pytest.mark.parametrize("name", ["infonce_loss", "siglip_loss", "in_batch_accuracy"])
def test_contrastive_losses_refuse_an_empty_batch(name):
    """A batch of 0 pairs used to give NaN."""
    fn = _contrastive_fns()[name]
    with pytest.raises(ValueError, match=rf"{name}: batch size must be >= 1, got 0"):
        fn(jnp.zeros((0, 4)), jnp.zeros((0, 4)))
    with pytest.raises(ValueError, match=rf"{name}: .*got a \(3, 4\) and b \(2, 4\)"):
        fn(jnp.zeros((3, 4)), jnp.zeros((2, 4)))


@pytest.mark.parametrize("name", ["infonce_loss_local", "siglip_loss_local"])
def test_local_contrastive_losses_refuse_an_empty_shard(name):
    from jax.sharding import PartitionSpec as P

    from jaxfm.tasks.contrastive import losses

    fn = getattr(losses, name)
    args = (jnp.float32(10.0),) if name == "infonce_loss_local" else (10.0, -10.0)
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    local = jax.jit(
        jax.shard_map(
            lambda a, b: fn(a, b, *args, "data"), mesh=mesh, in_specs=P("data"), out_specs=P()
        )
    )
    with pytest.raises(ValueError, match=rf"{name}: batch size must be >= 1, got 0"):
        local(jnp.zeros((0, 4)), jnp.zeros((0, 4)))
