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
# # jaxfm quickstart
#
# Build an experiment config, train a small model with the jaxfm engine (sharded jit step,
# Orbax checkpoints, Grain input), then look at the metrics it wrote.
#
# The task: learn the one-step flow map of the chaotic Lorenz-63 system from simulated
# trajectories (no download). The baseline to beat is *persistence* (predict no change).
#
# `JAXFM_SMOKE=1` (set by the test suite) shrinks everything so the notebook runs in seconds.

# %%
import dataclasses
import json
import os
import tempfile

import matplotlib.pyplot as plt

import jaxfm

jaxfm.configure_cpu()  # XLA CPU flags for sharded steps; before JAX starts

from jaxfm.config import override, to_dict
from jaxfm.data.lorenz import flow_map_splits
from jaxfm.data.sources import ArraySource
from jaxfm.tasks.regression.task import RegressionTask
from jaxfm.train import run
from jaxfm.train.plots import read_metrics

SMOKE = os.environ.get("JAXFM_SMOKE", "0") == "1"

# %% [markdown]
# ## 1. A config
# Experiment configs are frozen dataclasses; presets are functions. The quickstart script's
# presets work here too: take one and override fields by their dotted names, exactly as
# `--train.steps 200` would on the command line.

# %%
import jaxfm.tasks.regression.quickstart as qs  # noqa: E402

cfg = qs.smoke() if SMOKE else qs.default()
workdir = tempfile.mkdtemp(prefix="jaxfm-quickstart-")
cfg = override(
    cfg, {"workdir": workdir, "train.steps": 40 if SMOKE else 1500, "train.progress": "false"}
)
print(json.dumps(to_dict(cfg)["train"], indent=1))

# %% [markdown]
# ## 2. Data and training
# `run` builds the mesh (all local devices, data parallel by default), initialises the model
# already sharded, trains, evaluates, checkpoints and writes `results.json`.

# %%
d = cfg.data
train, held_out, stats = flow_map_splits(d.n_train, d.n_eval, d.n_steps, dt=d.dt)
results = run(
    cfg, RegressionTask(cfg.model), ArraySource(train, "train"), ArraySource(held_out, "eval")
)
print({k: v for k, v in results.items() if k.startswith("eval/")})

# %% [markdown]
# ## 3. Metrics
# `metrics.jsonl` holds one JSON object per logged step.

# %%
records = read_metrics(workdir)
train_rec = [r for r in records if "loss" in r]
eval_rec = [r for r in records if "eval/mse" in r]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy([r["step"] for r in train_rec], [r["loss"] for r in train_rec], label="train MSE")
ax.semilogy(
    [r["step"] for r in eval_rec], [r["eval/mse"] for r in eval_rec], "o-", label="held-out MSE"
)
ax.axhline(results["eval/persistence_mse"], color="gray", ls="--", label="persistence")
ax.set_xlabel("step")
ax.legend()
fig.savefig(os.path.join(workdir, "quickstart.png"))
assert results["eval/mse"] < results["eval/persistence_mse"], "the model should beat persistence"

# %% [markdown]
# ## 4. Resume
# Calling `run` again with the same workdir and more steps resumes from the newest checkpoint,
# data stream included.

# %%
more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=cfg.train.steps + 20))
results = run(
    more, RegressionTask(cfg.model), ArraySource(train, "train"), ArraySource(held_out, "eval")
)
print("now at step", results["step"])
