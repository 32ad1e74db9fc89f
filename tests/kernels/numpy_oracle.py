"""Float64 NumPy attention oracle (forward and analytic backward) shared by the kernel tests.

Pure NumPy on purpose: the Triton-interpreter tests import it from a venv without jax. It is an
independent derivation (explicit softmax Jacobian, no online softmax, no delta trick), so a bug
shared by the kernels and ``kernels/flash_attention/reference.py`` cannot hide here.

Conventions are those of ``kernels/flash_attention``: (B, L, H, D) layout, GQA head ``h`` reads
kv head ``h // (H // Hkv)``, top-left causal, segment ids (equal ids attend), rows that see no
key give 0 and a log-sum-exp of +inf.
"""

from __future__ import annotations

import numpy as np


def _visible(b, lq, lk, causal, q_seg, kv_seg):
    vis = np.ones((b, 1, lq, lk), bool)
    if causal:
        vis &= np.tril(np.ones((lq, lk), bool))[None, None]
    if q_seg is not None:
        vis &= np.asarray(q_seg)[:, None, :, None] == np.asarray(kv_seg)[:, None, None, :]
    return vis


def _probs(q, k, v, causal, scale, q_seg, kv_seg, bias=None):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, lq, h, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    kr = np.repeat(k, h // hkv, axis=2)
    vr = np.repeat(v, h // hkv, axis=2)
    s = np.einsum("bqhd,bkhd->bhqk", q, kr) * scale
    if bias is not None:  # additive logits bias, broadcast to (B, H, Lq, Lk)
        s = s + np.asarray(bias, np.float64)
    vis = np.broadcast_to(_visible(b, lq, lk, causal, q_seg, kv_seg), s.shape)
    s = np.where(vis, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(vis, np.exp(s - m), 0.0)
    l = e.sum(axis=-1, keepdims=True)
    p = e / np.where(l == 0, 1.0, l)
    lse = np.where(l[..., 0] == 0, np.inf, m[..., 0] + np.log(np.where(l == 0, 1.0, l))[..., 0])
    return q, kr, vr, p, lse, scale


def attention_forward(q, k, v, *, causal=False, scale=None, q_seg=None, kv_seg=None, bias=None):
    """Return ``(out (B, Lq, H, D), lse (B, H, Lq))`` in float64."""
    _, _, vr, p, lse, _ = _probs(q, k, v, causal, scale, q_seg, kv_seg, bias)
    return np.einsum("bhqk,bkhd->bqhd", p, vr), lse


def attention_backward(
    q, k, v, do, *, causal=False, scale=None, q_seg=None, kv_seg=None, bias=None
):
    """Return ``(dq, dk, dv)`` in float64 for the cotangent ``do`` of the output, and
    ``dbias`` (summed over the axes ``bias`` broadcasts) when a bias is given."""
    hkv = k.shape[2]
    q64, kr, vr, p, _, scale = _probs(q, k, v, causal, scale, q_seg, kv_seg, bias)
    do = np.asarray(do, np.float64)
    dv_r = np.einsum("bhqk,bqhd->bkhd", p, do)
    dp = np.einsum("bqhd,bkhd->bhqk", do, vr)
    # Softmax Jacobian: ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik).
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))
    dq = np.einsum("bhqk,bkhd->bqhd", ds, kr) * scale
    dk_r = np.einsum("bhqk,bqhd->bkhd", ds, q64) * scale
    b, lk, h, d = dk_r.shape
    group = h // hkv
    dk = dk_r.reshape(b, lk, hkv, group, d).sum(axis=3)
    dv = dv_r.reshape(b, lk, hkv, group, d).sum(axis=3)
    if bias is None:
        return dq, dk, dv
    # d logits / d bias = 1: dbias is ds, summed over the axes the bias broadcasts along.
    shape = np.shape(bias)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and ds.shape[i] != 1)
    return dq, dk, dv, ds.sum(axis=axes, keepdims=True)


# Error floors per dtype, added to the "2x naive same-precision attention" rule (FlashAttention's
# own test rule). The floor is half an ulp at 1.0 of the dtype the result is stored in: the final
# cast alone can cost that much, whatever the accumulation. float32 uses 1e-5 instead: the kernels
# sum up to a few hundred products in a different order than the oracle, and
# ~sqrt(L) * eps32 * |terms| with |terms| ~ 10 reaches a few 1e-6.
ERROR_FLOOR = {"float32": 1e-5, "float16": 2.0**-12, "bfloat16": 2.0**-9}


def max_abs_err(x, ref) -> float:
    """Max |x - ref| in float64 (NaN anywhere in x gives inf, so poisoned outputs fail)."""
    x = np.asarray(x, np.float64)
    if not np.all(np.isfinite(x)):
        return float("inf")
    return float(np.max(np.abs(x - np.asarray(ref, np.float64)))) if x.size else 0.0
