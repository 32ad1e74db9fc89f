"""A float64 NumPy transcription of MPP's AViT forward pass on a torch-layout state dict.

Written from the published architecture (PolymathicAI/multiple_physics_pretraining,
``models/{avit,spatial_modules,time_modules,mixed_modules,shared_modules}.py``) in MPP's own
layouts, (T, B, C, H, W) activations and (out, in, kh, kw) kernels, so it shares no code and no
layout with jaxfm's model: it is the independent reference for the converter test.
Also builds a random state dict with MPP's names and shapes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def mpp_state_dict(rng, *, dim=32, heads=2, depth=1, n_states=5, strides=(4, 2, 2)):
    """Random MPP AViT state dict (published names and shapes), O(1) values everywhere."""
    q, dh = dim // 4, dim // heads
    r = lambda *s, scale=1.0: (scale * rng.normal(size=s)).astype(np.float32)
    pos = lambda *s: (1.0 + 0.2 * rng.normal(size=s)).astype(np.float32)
    sd = {"space_bag.weight": r(q, n_states, scale=0.5), "space_bag.bias": r(q, scale=0.1)}
    chans = [q, q, q, dim]
    for i, s in enumerate(strides):
        sd[f"embed.in_proj.{3 * i}.weight"] = r(
            chans[i + 1], chans[i], s, s, scale=1 / math.sqrt(chans[i] * s * s)
        )
        sd[f"embed.in_proj.{3 * i + 1}.weight"] = pos(chans[i + 1])
        sd[f"embed.in_proj.{3 * i + 1}.bias"] = r(chans[i + 1])  # unused by MPP
    for b in range(depth):
        for kind in ("temporal", "spatial"):
            p = f"blocks.{b}.{kind}"
            sd[f"{p}.input_head.weight"] = r(3 * dim, dim, 1, 1, scale=1 / math.sqrt(dim))
            sd[f"{p}.input_head.bias"] = r(3 * dim, scale=0.1)
            sd[f"{p}.output_head.weight"] = r(dim, dim, 1, 1, scale=1 / math.sqrt(dim))
            sd[f"{p}.output_head.bias"] = r(dim, scale=0.1)
            for n in ("qnorm", "knorm"):
                sd[f"{p}.{n}.weight"], sd[f"{p}.{n}.bias"] = pos(dh), r(dh, scale=0.1)
            sd[f"{p}.rel_pos_bias.relative_attention_bias.weight"] = r(32, heads)
            for n in ("norm1", "norm2") + (("mlp_norm",) if kind == "spatial" else ()):
                sd[f"{p}.{n}.weight"], sd[f"{p}.{n}.bias"] = pos(dim), r(dim, scale=0.1)
        sd[f"blocks.{b}.temporal.gamma"] = pos(dim) * 0.5  # O(1) so the blocks matter
        sd[f"blocks.{b}.spatial.gamma_att"] = pos(dim) * 0.5
        sd[f"blocks.{b}.spatial.gamma_mlp"] = pos(dim) * 0.5
        sd[f"blocks.{b}.spatial.mlp.fc1.weight"] = r(4 * dim, dim, scale=1 / math.sqrt(dim))
        sd[f"blocks.{b}.spatial.mlp.fc1.bias"] = r(4 * dim, scale=0.1)
        sd[f"blocks.{b}.spatial.mlp.fc2.weight"] = r(dim, 4 * dim, scale=0.5 / math.sqrt(dim))
        sd[f"blocks.{b}.spatial.mlp.fc2.bias"] = r(dim, scale=0.1)
    rev = strides[::-1]
    dchans = [dim, q, q]
    for i in range(2):
        sd[f"debed.out_proj.{3 * i}.weight"] = r(
            dchans[i], dchans[i + 1], rev[i], rev[i], scale=1 / math.sqrt(dchans[i])
        )
        sd[f"debed.out_proj.{3 * i + 1}.weight"] = pos(dchans[i + 1])
        sd[f"debed.out_proj.{3 * i + 1}.bias"] = r(dchans[i + 1])  # unused by MPP
    sd["debed.out_kernel"] = r(q, n_states, rev[2], rev[2], scale=1 / math.sqrt(q))
    sd["debed.out_bias"] = r(n_states, scale=0.1)
    return sd


def _gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _conv(x, w):  # x (N, I, H, W), w (O, I, k, k), stride k
    n, c, h, ww = x.shape
    k = w.shape[-1]
    xp = x.reshape(n, c, h // k, k, ww // k, k)
    return np.einsum("nihawb,oiab->nohw", xp, w)


def _convT(x, w):  # x (N, I, h, w), w (I, O, k, k), stride k
    n, _, h, ww = x.shape
    k = w.shape[-1]
    y = np.einsum("nihw,ioab->nohawb", x, w)
    return y.reshape(n, w.shape[1], h * k, ww * k)


def _rmsin(x, wt):  # (N, C, H, W)
    std = x.std(axis=(-2, -1), ddof=1, keepdims=True)
    return x / (std + 1e-8) * wt[None, :, None, None]


def _instnorm(x, wt, b):
    m, v = x.mean(axis=(-2, -1), keepdims=True), x.var(axis=(-2, -1), keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * wt[None, :, None, None] + b[None, :, None, None]


def _ln(x, wt, b):
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * wt + b


def _bucket(rel):
    n = -rel
    ret = 16 if n < 0 else 0
    n = abs(n)
    if n < 8:
        return ret + n
    return ret + min(8 + int(math.log(n / 8) / math.log(32 / 8) * 8), 15)


def _rel_bias(table, length, bc):
    th = length // 2
    out = np.zeros((table.shape[1], length, length))
    for i in range(length):
        for j in range(length):
            r = j - i
            if bc == 1 and r < -th:
                r = r % th
            elif bc == 1 and r > th:
                r = r % -th
            out[:, i, j] = table[_bucket(r)]
    return out[None]


def _attend(q, k, v, bias):  # (N, he, L, dh)
    logits = np.einsum("nhqd,nhkd->nhqk", q, k) / math.sqrt(q.shape[-1]) + bias
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    return np.einsum("nhqk,nhkd->nhqd", p, v)


def _qkv(sd, p, x, heads):  # x (N, C, H, W) -> q, k, v (N, he, H, W, dh)
    y = np.einsum("nchw,oc->nohw", x, sd[f"{p}.input_head.weight"][:, :, 0, 0])
    y = y + sd[f"{p}.input_head.bias"][None, :, None, None]
    n, c3, h, w = y.shape
    y = y.reshape(n, heads, c3 // heads, h, w).transpose(0, 1, 3, 4, 2)
    dh = c3 // heads // 3
    q, k, v = y[..., :dh], y[..., dh : 2 * dh], y[..., 2 * dh :]
    q = _ln(q, sd[f"{p}.qnorm.weight"], sd[f"{p}.qnorm.bias"])
    k = _ln(k, sd[f"{p}.knorm.weight"], sd[f"{p}.knorm.bias"])
    return q, k, v


def _out_head(sd, p, x):
    y = np.einsum("nchw,oc->nohw", x, sd[f"{p}.output_head.weight"][:, :, 0, 0])
    return y + sd[f"{p}.output_head.bias"][None, :, None, None]


def mpp_forward(sd, x, labels, bcs, heads):
    """MPP AViT.forward: x (T, B, C, H, W), labels (C,), bcs (2,) = [x (W), y (H)] flags."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = np.asarray(x, np.float64)
    t, b = x.shape[:2]
    mean = x.mean(axis=(0, 3, 4), keepdims=True)
    std = x.std(axis=(0, 3, 4), ddof=1, keepdims=True) + 1e-7
    x = (x - mean) / std
    w = sd["space_bag.weight"][:, labels]
    scale = math.sqrt(sd["space_bag.weight"].shape[1] / len(labels))
    x = scale * (
        np.einsum("tbchw,qc->tbqhw", x, w) + sd["space_bag.bias"][None, None, :, None, None]
    )
    h = x.reshape(t * b, *x.shape[2:])
    for i in range(3):
        h = _rmsin(
            _conv(h, sd[f"embed.in_proj.{3 * i}.weight"]), sd[f"embed.in_proj.{3 * i + 1}.weight"]
        )
        if i < 2:
            h = _gelu(h)
    x = h.reshape(t, b, *h.shape[1:])
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for blk in range(depth):
        p = f"blocks.{blk}.temporal"
        _, _, c, hh, ww = x.shape
        inp = x
        y = _instnorm(x.reshape(t * b, c, hh, ww), sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"])
        q, k, v = _qkv(sd, p, y, heads)  # (t b) he h w dh
        to_seq = lambda a, hh=hh, ww=ww: (
            a.reshape(t, b, heads, hh, ww, -1)
            .transpose(1, 3, 4, 2, 0, 5)
            .reshape(b * hh * ww, heads, t, -1)
        )
        o = _attend(
            to_seq(q),
            to_seq(k),
            to_seq(v),
            _rel_bias(sd[f"{p}.rel_pos_bias.relative_attention_bias.weight"], t, 0),
        )
        o = o.reshape(b, hh, ww, heads, t, -1).transpose(4, 0, 3, 5, 1, 2).reshape(t * b, c, hh, ww)
        o = _out_head(sd, p, _instnorm(o, sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"]))
        x = inp + o.reshape(t, b, c, hh, ww) * sd[f"{p}.gamma"][None, None, :, None, None]
        p = f"blocks.{blk}.spatial"
        xs = x.reshape(t * b, c, hh, ww)
        inp = xs
        y = _rmsin(xs, sd[f"{p}.norm1.weight"])
        q, k, v = _qkv(sd, p, y, heads)  # n he h w dh
        tab = sd[f"{p}.rel_pos_bias.relative_attention_bias.weight"]
        n = t * b
        seq_x = lambda a, n=n, hh=hh, ww=ww: a.transpose(0, 2, 1, 3, 4).reshape(
            n * hh, heads, ww, -1
        )
        ox = _attend(seq_x(q), seq_x(k), seq_x(v), _rel_bias(tab, ww, bcs[0]))
        ox = ox.reshape(n, hh, heads, ww, -1).transpose(0, 2, 4, 1, 3).reshape(n, c, hh, ww)
        seq_y = lambda a, n=n, hh=hh, ww=ww: a.transpose(0, 3, 1, 2, 4).reshape(
            n * ww, heads, hh, -1
        )
        oy = _attend(seq_y(q), seq_y(k), seq_y(v), _rel_bias(tab, hh, bcs[1]))
        oy = oy.reshape(n, ww, heads, hh, -1).transpose(0, 2, 4, 3, 1).reshape(n, c, hh, ww)
        o = _out_head(sd, p, _rmsin((ox + oy) / 2, sd[f"{p}.norm2.weight"]))
        xs = inp + o * sd[f"{p}.gamma_att"][None, :, None, None]
        m = xs.transpose(0, 2, 3, 1)
        m = _gelu(m @ sd[f"{p}.mlp.fc1.weight"].T + sd[f"{p}.mlp.fc1.bias"])
        m = m @ sd[f"{p}.mlp.fc2.weight"].T + sd[f"{p}.mlp.fc2.bias"]
        m = _rmsin(m.transpose(0, 3, 1, 2), sd[f"{p}.mlp_norm.weight"])
        xs = xs + sd[f"{p}.gamma_mlp"][None, :, None, None] * m
        x = xs.reshape(t, b, c, hh, ww)
    h = x.reshape(t * b, *x.shape[2:])
    for i in range(2):
        h = _gelu(
            _rmsin(
                _convT(h, sd[f"debed.out_proj.{3 * i}.weight"]),
                sd[f"debed.out_proj.{3 * i + 1}.weight"],
            )
        )
    h = (
        _convT(h, sd["debed.out_kernel"][:, labels])
        + sd["debed.out_bias"][labels][None, :, None, None]
    )
    out = h.reshape(t, b, *h.shape[1:]) * std + mean
    return out[-1]  # (B, C, H, W)
