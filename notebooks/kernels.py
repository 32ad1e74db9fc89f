# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Kernels playground: fused attention on a CPU
#
# jaxfm has one attention entry point, `jaxfm.nn.attention.dot_product_attention(...,
# impl=...)`, that dispatches to XLA, cuDNN, a Pallas FlashAttention-2 kernel or a Triton one
# (`kernels/flash_attention`, see `kernels/README.md`). On a CPU the Pallas kernel runs in
# *interpret mode* (the kernel body executed block by block by jax), cuDNN and Triton fall back
# to XLA with a logged reason. This notebook
#
# 1. runs every implementation on small shapes and compares it with a float64 NumPy softmax,
# 2. rebuilds the online-softmax tiling step by step from the reference function,
# 3. shows how to run the benchmark (`python -m kernels.bench`) and read its table and plot.
#
# `JAXFM_SMOKE=1` (set by the test suite) keeps the benchmark sweep to one sequence length.

# %%
import json
import logging
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxfm
import kernels

jaxfm.configure_cpu()  # XLA CPU flags for sharded steps; before JAX starts

from jaxfm.nn.attention import IMPLS, dot_product_attention
from kernels.flash_attention import attention_reference, fallback_reason, flash_attention_pallas

SMOKE = os.environ.get("JAXFM_SMOKE", "0") == "1"
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
workdir = tempfile.mkdtemp(prefix="jaxfm-kernels-")
print("backend:", jax.default_backend(), "| attention impls:", IMPLS)

# %% [markdown]
# ## 1. Every implementation against a float64 oracle
# Layout `q (B, Lq, H, D)`, `k, v (B, Lk, Hkv, D)`; here 4 query heads share 2 key/value heads
# (grouped-query attention) and the mask is causal. The oracle below is plain float64 NumPy,
# independent of every jax path.

# %%
B, L, H, HKV, D = 2, 64, 4, 2, 32
kq, kk, kv, kg = jax.random.split(jax.random.key(0), 4)
q = jax.random.normal(kq, (B, L, H, D), jnp.float32)
k = jax.random.normal(kk, (B, L, HKV, D), jnp.float32)
v = jax.random.normal(kv, (B, L, HKV, D), jnp.float32)


def oracle(q, k, v, causal=True):
    """float64 softmax(q k^T / sqrt(D)) v with GQA head sharing and a top-left causal mask."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    group = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


want = oracle(q, k, v)
outputs = {
    "reference": attention_reference(q, k, v, causal=True),
    "pallas (interpret)": flash_attention_pallas(q, k, v, causal=True, interpret=True),
}
print("triton here:", fallback_reason("triton", q, k, v))
for impl in IMPLS:  # an impl that cannot run here logs why (once) and falls back to xla
    outputs[f"dot_product_attention(impl={impl!r})"] = dot_product_attention(
        q, k, v, causal=True, impl=impl
    )
errors = {
    name: float(np.max(np.abs(np.asarray(out, np.float64) - want))) for name, out in outputs.items()
}
for name, err in errors.items():
    print(f"{name:42s} max |err| vs float64 = {err:.2e}")
# fp32 tolerance of the kernel tests (kernels/README.md): summation order over a few dozen
# float32 terms moves the result by ~1e-6; 1e-5 leaves room and still catches any real bug.
assert max(errors.values()) < 1e-5, errors

# %% [markdown]
# `impl="pallas"` on a CPU is the same kernel in interpret mode: asked for by name it runs
# (slowly); under `impl="auto"` a CPU always gets XLA. The gradient goes through the kernel's
# own backward (two more Pallas kernels, dq and dk/dv, recomputing probabilities from the
# stored log-sum-exp):

# %%
do = jax.random.normal(kg, q.shape, jnp.float32)


def loss(fn):
    return lambda q, k, v: jnp.sum(fn(q, k, v) * do)


g_pallas = jax.grad(
    loss(lambda *a: flash_attention_pallas(*a, causal=True, interpret=True)), argnums=(0, 1, 2)
)(q, k, v)
g_ref = jax.grad(loss(lambda *a: attention_reference(*a, causal=True)), argnums=(0, 1, 2))(q, k, v)
for name, a, b in zip(("dq", "dk", "dv"), g_pallas, g_ref):
    print(f"{name}: max |pallas - reference| = {float(jnp.max(jnp.abs(a - b))):.2e}")
    assert float(jnp.max(jnp.abs(a - b))) < 1e-4  # grads sum ~64 terms of size ~1: fp32 order

# %% [markdown]
# ## 2. The online softmax, one key tile at a time
# FlashAttention never forms the `Lq x Lk` matrix. For a block of queries it walks over key
# tiles, keeping per row a running max `m`, a denominator `l` and an unnormalised output `acc`:
#
# ```
# s = q k_tile^T * scale;  m' = max(m, rowmax s);  p = exp(s - m');  alpha = exp(m - m')
# l = alpha * l + rowsum p;  acc = alpha * acc + p v_tile          ...  out = acc / l
# ```
#
# The reference function can play one tile: `attention_reference(q, k_tile, v_tile,
# return_lse=True)` gives that tile's normalised output `o_t` and log-sum-exp `lse_t`
# (`= m_t + log l_t`). Merging tiles by their `lse` is exactly the rescaling above:
# `lse = logaddexp(lse, lse_t)`, `out = exp(lse_old - lse) * out + exp(lse_t - lse) * o_t`.
# We do it for one batch and one head (non-causal, so every tile contributes to every row).

# %%
TILE = 16
q1, k1, v1 = q[:1, :, :1], k[:1, :, :1], v[:1, :, :1]  # (1, L, 1, D)
full, full_lse = attention_reference(q1, k1, v1, return_lse=True)
out = jnp.zeros_like(q1)
lse = jnp.full((1, 1, L), -jnp.inf)
steps = []
for t0 in range(0, L, TILE):
    o_t, lse_t = attention_reference(
        q1, k1[:, t0 : t0 + TILE], v1[:, t0 : t0 + TILE], return_lse=True
    )
    new_lse = jnp.logaddexp(lse, lse_t)
    w_old = jnp.exp(lse - new_lse)[0, 0][None, :, None, None]  # (1, L, 1, 1) per query row
    w_new = jnp.exp(lse_t - new_lse)[0, 0][None, :, None, None]
    out, lse = w_old * out + w_new * o_t, new_lse
    err = float(jnp.max(jnp.abs(out - full)))
    steps.append(err)
    print(
        f"keys [{t0:2d}, {t0 + TILE:2d}): running lse row 0 = {float(lse[0, 0, 0]):+.4f} "
        f"(final {float(full_lse[0, 0, 0]):+.4f}); max |out - full| = {err:.2e}"
    )
assert steps[-1] < 1e-5  # same fp32 rounding argument as above

# %% [markdown]
# The same loop written with the raw `m, l, acc` state of the kernels, for one query row,
# confirms that the two views agree (`lse = m + log l`):

# %%
scale = 1.0 / np.sqrt(D)
row = 5
m, l, acc = -jnp.inf, 0.0, jnp.zeros(D)
for t0 in range(0, L, TILE):
    s = (k1[0, t0 : t0 + TILE, 0] @ q1[0, row, 0]) * scale  # (TILE,) logits of this tile
    m_new = jnp.maximum(m, s.max())
    p, alpha = jnp.exp(s - m_new), jnp.exp(m - m_new)
    l, acc, m = alpha * l + p.sum(), alpha * acc + p @ v1[0, t0 : t0 + TILE, 0], m_new
print("m + log l =", float(m + jnp.log(l)), " reference lse =", float(full_lse[0, 0, row]))
print("max |acc / l - reference row| =", float(jnp.max(jnp.abs(acc / l - full[0, row, 0]))))
assert abs(float(m + jnp.log(l)) - float(full_lse[0, 0, row])) < 1e-5

# %%
probs = jax.nn.softmax((q1[0, :, 0] @ k1[0, :, 0].T) * scale, axis=-1)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].imshow(np.asarray(probs), cmap="viridis")
for t0 in range(TILE, L, TILE):
    axes[0].axvline(t0 - 0.5, color="w", lw=1)
axes[0].set_title(f"attention probabilities, key tiles of {TILE}")
axes[0].set_xlabel("key")
axes[0].set_ylabel("query")
axes[1].semilogy(np.arange(1, len(steps) + 1), np.maximum(steps, 1e-9), "o-")
axes[1].set_xlabel("key tiles merged")
axes[1].set_ylabel("max |running out - full attention|")
axes[1].set_title("online softmax converges to the exact result")
fig.tight_layout()
fig.savefig(os.path.join(workdir, "online_softmax.png"))

# %% [markdown]
# ## 3. The benchmark
# `python -m kernels.bench --smoke --out DIR` sweeps small shapes on a CPU (the GPU sweep is
# the default without `--smoke`; `--impls`, `--seq-lens`, `--head-dims` narrow it). It writes
# `bench.jsonl` (one row per impl x shape x pass, with device, versions and git SHA),
# `bench.md` (the table) and `bench.png` (TFLOP/s against sequence length).
#
# Reading it: `median ms` is the median of `--repeats` calls after warm-up, compile excluded;
# `TFLOP/s` counts `4 B H S^2 D` forward FLOPs (halved when causal, backward 2.5x); `% matmul
# peak` divides by a bf16 matmul measured on the same device, the ceiling to compare against;
# `p20–p80 ms` is the spread of the timed calls; `vs xla` is XLA's median over this row's
# (above 1: faster than XLA); `mode` says `interpret` for Pallas run by its interpreter off a
# GPU. CPU numbers only check the harness: interpret-mode Pallas is *meant* to be slow here.

# %%
repo = os.path.dirname(os.path.dirname(os.path.abspath(kernels.__file__)))
bench_dir = os.path.join(workdir, "bench")
cmd = [sys.executable, "-m", "kernels.bench", "--smoke", "--out", bench_dir]
if SMOKE:
    cmd += ["--seq-lens", "32"]
env = {
    **os.environ,
    "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "XLA_FLAGS": "",
}  # one CPU device is what the benchmark times
print("$", " ".join(cmd[1:]))
proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=True)
print(proc.stdout[-2000:])

# %%
print(open(os.path.join(bench_dir, "bench.md")).read())
rows = [json.loads(line) for line in open(os.path.join(bench_dir, "bench.jsonl"))]
print("row keys:", sorted(rows[0]))
fwd = {r["impl"]: r["time_ms"] for r in rows if r["status"] == "ok" and r["passes"] == "fwd"}
print("forward ms by impl:", fwd)
speedup = {
    (r["impl"], r["mode"]): r["speedup_vs_xla"]
    for r in rows
    if r["status"] == "ok" and r["passes"] == "fwd"
}
print("forward speed-up over XLA (impl, mode):", speedup)

fig, ax = plt.subplots(figsize=(12, 3.5))
ax.imshow(plt.imread(os.path.join(bench_dir, "bench.png")))
ax.axis("off")
fig.savefig(os.path.join(workdir, "bench_view.png"))
assert {"xla", "pallas"} <= set(fwd)
