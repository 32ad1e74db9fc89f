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
# # xVal: numbers as one scaled token
#
# xVal (Golkar, Pettee et al. 2023, arXiv 2310.02989) writes every number in a text as one
# shared `[NUM]` token whose embedding is *multiplied by the number's value*; a separate
# number head regresses the value when the model emits `[NUM]`. Digit encodings (`p10`: sign,
# three digits, exponent = 5 tokens per number) instead spell numbers out.
#
# This notebook tokenises a text with numbers, shows the `[NUM]` values, then trains an xVal
# model and a `p10` model side by side on the same synthetic arithmetic task (same samples,
# steps, seed) and compares their generated answers with the truth.
#
# `JAXFM_SMOKE=1` (set by the test suite) shrinks the run to a few seconds of training, too
# short for either model to be good: read the smoke numbers as a check that the pipeline runs.

# %%
import dataclasses
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import jaxfm

jaxfm.configure_cpu()  # XLA CPU flags for sharded steps; before JAX starts

import jaxfm.tasks.xval.study as xs
from jaxfm.config import override
from jaxfm.data.number_tasks import generate_texts, make_splits
from jaxfm.data.numbers import NUM, SPECIALS, FieldScaler, NumberCodec, extract
from jaxfm.data.sources import ArraySource
from jaxfm.tasks.xval.task import SideBySideTask
from jaxfm.train import load_model, run

SMOKE = os.environ.get("JAXFM_SMOKE", "0") == "1"
workdir = tempfile.mkdtemp(prefix="jaxfm-xval-")

# %% [markdown]
# ## 1. Tokenising a text with numbers
# `extract` finds the number literals and the *field* of each (the last `key=` before it).
# A `FieldScaler` divides each field by a power of two so values land in [-5, 5] (the
# magnitude must survive the first LayerNorm); the codec then emits one `[NUM]` per number
# and carries the normalised value in a parallel float array (1.0 everywhere else).

# %%
texts = [
    "orbit a=1.52, e=0.0934, period=1.88",
    "orbit a=5.2, e=0.0489, period=11.86",
    "orbit a=0.387, e=0.2056, period=0.241",
]
scaler = FieldScaler.fit(texts)
print("fields and scales:", scaler.scales)
ex = extract(texts[0])
print("values:", ex.values, "fields:", ex.fields)

codec = NumberCodec("xval", scaler)
enc = codec.encode(texts[0])


def token_name(t: int) -> str:
    """Printable name of a token id (specials by name, characters as themselves)."""
    return SPECIALS[t] if t < len(SPECIALS) else repr(codec.decode([t], [1.0]))


for t, v in zip(enc.tokens, enc.values):
    if t == NUM:
        print(f"{t:4d}  [NUM]  value {v:+.5f}")
print(f"{len(enc.tokens)} tokens:", " ".join(token_name(int(t)) for t in enc.tokens[:20]), "...")
print("decoded back:", codec.decode(enc.tokens, enc.values))
assert codec.decode(enc.tokens, enc.values) == texts[0]

# %% [markdown]
# The same text in the `p10` digit encoding costs 5 tokens per number instead of 1:

# %%
p10 = NumberCodec("p10")
enc10 = p10.encode(texts[0])
print(
    f"xval: {len(enc.tokens)} tokens, p10: {len(enc10.tokens)} tokens "
    f"(vocabulary {codec.vocab_size} vs {p10.vocab_size})"
)

# %% [markdown]
# ## 2. The task
# `arithmetic`: a sum/difference of a few operands, the answer is the last number. Training
# texts avoid a held-out band of values, so there is an in-distribution (ID) and an
# out-of-distribution (OOD) evaluation split.

# %%
cfg = xs.smoke() if SMOKE else xs.study()
cfg = override(
    cfg, {"workdir": workdir, "train.steps": 20 if SMOKE else 600, "train.progress": "false"}
)
cfg = dataclasses.replace(
    cfg, study=dataclasses.replace(cfg.study, tasks=("arithmetic",), encodings=("xval", "p10"))
)
if SMOKE:  # fewer held-out samples: generation is the slow part on CPU
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, n_eval=32),
        study=dataclasses.replace(cfg.study, gen_batch=32),
    )
few = dataclasses.replace(cfg.data, n_train=3, n_eval=1)
sample = generate_texts(few)
for t in sample["train"]:
    print(t)
_, arrays, _ = make_splits(few, sample)
row = arrays["train"]
print("answer position of each row:", row["answer_pos"], "normalised answers:", row["answer"])

# %% [markdown]
# ## 3. Train xVal and p10 side by side
# `SideBySideTask` trains one model per encoding in a single engine run: every model sees the
# same samples in the same order, each in its own encoding.

# %%
runs = xs.build(cfg)  # name -> (codec, arrays per split, model config)
task = SideBySideTask({name: model_cfg for name, (_, _, model_cfg) in runs.items()})


def joined(split):
    """One batch dict holding every model's arrays under NAME/key (same samples by index)."""
    return {
        f"{name}/{k}": v
        for name, (_, arrays, _) in runs.items()
        for k, v in arrays[split].items()
        if k in ("tokens", "values", "loss_mask")
    }


results = run(
    cfg,
    task,
    ArraySource(joined("train"), "xval-nb-train"),
    ArraySource(joined("eval_id"), "xval-nb-eval"),
)
print(results["status"], "at step", results["step"])

# %% [markdown]
# ## 4. Generated answers vs the truth
# Answers are *generated* greedily: for xVal the token head must emit `[NUM]` and the number
# head gives its value; for p10 the five digit tokens must form a number (else the sample is
# "invalid"). Errors are in normalised units; "constant" predicts the training mean.

# %%
rows, preds = xs.evaluate_models(cfg, runs, load_model(workdir, task, cfg))
for r in rows:
    print(
        f"{r['encoding']:5s}  ID MSE {r['id_mse']:.4g}  OOD MSE {r['ood_mse']:.4g}  "
        f"ID valid {r['id_valid']:.0%}  constant MSE {r['id_mse_constant']:.3g}"
    )

fig, axes = plt.subplots(1, len(preds), figsize=(4 * len(preds), 4), squeeze=False)
for ax, ((task_name, encoding), splits) in zip(axes[0], preds.items()):
    for split, colour in (("eval_id", "C0"), ("eval_ood", "C3")):
        pred, true = splits[split]
        ok = np.isfinite(pred)
        ax.scatter(
            true[ok],
            pred[ok],
            s=6,
            c=colour,
            alpha=0.6,
            label=f"{split[5:]} ({ok.mean():.0%} valid)",
        )
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.7)
    ax.set_title(f"{task_name} / {encoding}")
    ax.set_xlabel("true (normalised)")
    ax.set_ylabel("predicted")
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(os.path.join(workdir, "xval_pred_vs_true.png"))
assert all(np.isfinite(r["id_mse_constant"]) for r in rows)

# %% [markdown]
# With the full budget (`JAXFM_SMOKE=0`, 600 steps) xVal's answers line up with the diagonal
# within the training range, and it always emits a valid number; the committed study
# (`python -m experiments.xval_study study`, table in `docs/xval.md`) has the numbers for both
# tasks.
