"""Backbone comparison: the same multi-physics pretraining budget with each sequence mixer.

    python -m experiments.backbone_compare smoke --workdir runs/bc-smoke/attention
    python -m experiments.backbone_compare tiny --mixer attention --workdir runs/bc/attention
    python -m experiments.backbone_compare tiny --mixer mamba --workdir runs/bc/mamba
    python -m experiments.backbone_compare tiny --mixer mamba2 --workdir runs/bc/mamba2
    python -m experiments.backbone_compare tiny --ffn moe --workdir runs/bc/moe

Each run is an ordinary surrogate pretraining (``jaxfm/tasks/surrogate/pipeline.py``: AViT
on the simulated systems, system-uniform sampling) whose time and space mixers are set to
``--mixer`` (one of ``jaxfm.nn.trunk.MIXERS``; non-causal state-space mixers run
bidirectionally) and whose space-block feed-forward is ``--ffn`` (one of
``jaxfm.nn.trunk.FFNS``); their settings are the AViT sub-configs
(``--model.avit.mamba.d_state 8``, ``--model.avit.moe.n_experts 4``, ...). Besides the usual
results it records the trunk (``mixer+ffn``), the parameter count, the
median step time (``metrics.jsonl``), the compiled memory of one training step (XLA's
memory analysis of loss + gradient on one batch) and the command. After each run the table
is rebuilt from every sibling run that has such results, so running the trunks one after
another (same parent folder) fills one table: one-step eval NRMSE, persistence, rollout
NRMSE (first 5 autoregressive steps on the eval trajectories, averaged over systems), step
time, parameters, memory. The table is a study folder, ``--results_dir`` (default: the
workdir's parent): results.json (the rows), report.md (the table), config.json (each run's
config) and command.txt (each run's training command, then its ``--cost_only`` command).
Passing ``--results_dir results/backbone_compare`` to every run refreshes the committed folder.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxfm
from jaxfm.ckpt import CkptConfig
from jaxfm.config import run_cli
from jaxfm.models.surrogate import avit_config
from jaxfm.nn.trunk import FFNName, MixerName, count_params
from jaxfm.provenance import command_line, compiled_peak_bytes, write_study
from jaxfm.tasks.surrogate.pipeline import (
    PDEDataConfig,
    SurrogateExperiment,
    build_data,
    train,
)
from jaxfm.tasks.surrogate.presets import pretrain_smoke
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from jaxfm.train import TrainConfig, write_results


@dataclasses.dataclass(frozen=True)
class BackboneCompare(SurrogateExperiment):
    """A surrogate pretraining run whose AViT mixers and feed-forward are chosen by ``mixer``
    and ``ffn``."""

    mixer: MixerName = "attention"
    """Sequence mixer along time and space (sets model.avit.time_mixer and space_mixer):
    attention (MPP's, with relative position bias), mamba (selective scan, bidirectional) or
    mamba2 (SSD, bidirectional)."""
    ffn: FFNName = "mlp"
    """Feed-forward of the space blocks (sets model.avit.ffn): mlp (MPP's), moe (top-2
    mixture of experts) or none."""
    cost_only: bool = False
    """Skip training: re-measure the cost columns (fwd+bwd time and compiled memory of one
    batch) of an existing run and rebuild the table. Running it for every trunk back to back
    on an idle machine makes the time column comparable across rows."""
    cost_repeats: int = 10
    """Timed fwd+bwd calls whose median is the table's time column."""
    results_dir: str = ""
    """Study folder of the table across runs (command.txt, config.json, results.json,
    report.md); empty: the workdir's parent, where the sibling runs are."""


def smoke() -> BackboneCompare:
    """About a minute on CPU: the surrogate pretraining's ``smoke`` preset (1-block AViT, 4
    systems at 32x32, 20 steps)."""
    base = pretrain_smoke()
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return BackboneCompare(**{**fields, "workdir": "runs/backbone-compare-smoke/attention"})


def tiny() -> BackboneCompare:
    """The CPU comparison: the surrogate's ``tiny`` AViT (D 64, depth 4, patch 8) at 32x32,
    16 trajectories per system, 200 steps of batch 8; several minutes per trunk on 2 cores.
    A budget for comparing costs and trends, far from convergence."""
    return BackboneCompare(
        workdir="runs/backbone-compare/attention",
        model=SurrogateTaskConfig(avit=avit_config("tiny")),
        data=PDEDataConfig(n_train=16, n_eval=4, resolution=32, n_steps=16),
        train=TrainConfig(
            steps=200,
            batch_size=8,
            lr=1e-3,
            warmup_steps=20,
            log_every=25,
            eval_every=100,
            eval_batches=0,  # every held-out window: 4 systems x 4 trajectories x 12 starts
        ),
        ckpt=CkptConfig(every=100),
    )


PRESETS = {"smoke": smoke, "tiny": tiny}


def with_trunk(cfg: BackboneCompare) -> BackboneCompare:
    """``cfg`` with the AViT's time and space mixers set to ``cfg.mixer`` and its space-block
    feed-forward to ``cfg.ffn``."""
    avit = dataclasses.replace(
        cfg.model.avit, time_mixer=cfg.mixer, space_mixer=cfg.mixer, ffn=cfg.ffn
    )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, avit=avit))


def step_cost(cfg: BackboneCompare) -> dict:
    """Parameter count, compiled memory (bytes) and median wall time (s) of loss + gradient
    on one batch, measured in this process (compile excluded, two warm-up calls)."""
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed, cfg.workdir)
    task = SurrogateTask(cfg.model, data.periodic)
    model = task.build_model(nnx.Rngs(cfg.train.seed))
    n = cfg.train.batch_size
    examples = [data.train[i] for i in range(n)]
    batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest, batch):
        m = nnx.merge(graphdef, params, rest)
        return task.loss(m, batch, nnx.Rngs(dropout=0))[0]

    compiled = jax.jit(jax.grad(loss)).lower(params, rest, batch).compile()
    times = []
    for i in range(2 + cfg.cost_repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, rest, batch))
        if i >= 2:
            times.append(time.perf_counter() - t0)
    peak = compiled_peak_bytes(compiled)
    return {
        "params": count_params(model),
        "step_peak_bytes": peak,
        "fwd_bwd_s": statistics.median(times),
        "cost_measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def median_step_time(workdir: str) -> float | None:
    """Median ``step_time_s`` logged in ``WORKDIR/metrics.jsonl`` (compile step excluded)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        times = [r["step_time_s"] for r in map(json.loads, f) if "step_time_s" in r]
    return statistics.median(times[1:] or times) if times else None


def _rollout_mean5(results: dict) -> float | None:
    vals = [sys_res["model"]["nrmse"]["mean_5"] for sys_res in results.get("rollout", {}).values()]
    return float(np.mean(vals)) if vals else None


def _per_system(r: dict, key: str) -> dict[str, float]:
    """System -> ``eval/<key>/<system>`` of a run's results (systems of its eval)."""
    prefix = f"eval/{key}/"
    return {
        k[len(prefix) :]: v
        for k, v in r.items()
        if k.startswith(prefix) and "/" not in k[len(prefix) :]
    }


def write_table(parent: str, results_dir: str | None = None) -> list[dict]:
    """Rebuilds the study folder ``results_dir`` (default ``parent``) from every run folder
    under ``parent``: results.json (one row per run), report.md (the table), config.json
    (each run's config.json) and command.txt (the runs' commands)."""
    rows, configs, train_cmds, cost_cmds = [], {}, [], []
    for path in sorted(glob.glob(os.path.join(parent, "*", "results.json"))):
        with open(path) as f:
            r = json.load(f)
        if "trunk" not in r:
            continue
        run_dir = os.path.dirname(path)
        name = os.path.basename(run_dir)
        ev = r.get("eval", r)
        rows.append(
            dict(
                run=name,
                trunk=r["trunk"],
                step=r.get("step"),
                eval_nrmse=ev.get("eval/nrmse"),
                persistence_nrmse=ev.get("eval/persistence_nrmse"),
                eval_nrmse_by_system=_per_system(ev, "nrmse"),
                persistence_nrmse_by_system=_per_system(ev, "persistence_nrmse"),
                eval_windows_by_system={k: int(v) for k, v in _per_system(ev, "windows").items()},
                rollout_nrmse_5=_rollout_mean5(r),
                step_time_s=r.get("step_time_s"),
                fwd_bwd_s=r.get("fwd_bwd_s"),
                params=r.get("params"),
                step_peak_mb=(r["step_peak_bytes"] / 2**20 if r.get("step_peak_bytes") else None),
            )
        )
        if os.path.exists(os.path.join(run_dir, "config.json")):
            with open(os.path.join(run_dir, "config.json")) as f:
                configs[name] = json.load(f)
        train_cmds += [r["command"]] if r.get("command") else []
        cost_cmds += [r["cost_command"]] if r.get("cost_command") else []
    fmt = lambda v, f="{:.4g}": "-" if v is None else f.format(v)
    lines = [
        f"# Backbone comparison ({jax.default_backend().upper()})",
        "",
        "Command: `command.txt` (each trunk trained, then the cost columns re-measured back to "
        "back with `--cost_only true`). One-step eval NRMSE = mean over systems of each "
        "system's NRMSE on its held-out windows (per system below), persistence = "
        "copy the last frame, rollout = first 5 autoregressive steps averaged over systems; "
        "fwd+bwd s = median of `--cost_repeats` loss+gradient calls on one batch; step MB = "
        "XLA's compiled peak of that call.",
        "",
        "| run | trunk | steps | eval NRMSE | persistence | rollout NRMSE (5) | "
        "train step s | fwd+bwd s | params | step MB |",
        "|" + "---|" * 10,
    ]
    for w in rows:
        lines.append(
            f"| {w['run']} | {w['trunk']} | {w['step']} | {fmt(w['eval_nrmse'])} | "
            f"{fmt(w['persistence_nrmse'])} | {fmt(w['rollout_nrmse_5'])} | "
            f"{fmt(w['step_time_s'], '{:.3f}')} | {fmt(w['fwd_bwd_s'], '{:.3f}')} | "
            f"{fmt(w['params'], '{:,}')} | "
            f"{fmt(w['step_peak_mb'], '{:.1f}')} |"
        )
    lines += ["", *_system_table(rows)]
    if jax.process_index() == 0:
        config = {
            "note": "one run per trunk, each with its preset and the overrides of command.txt",
            "runs": configs,
        }
        write_study(
            results_dir or parent,
            command="\n".join(train_cmds + cost_cmds),
            config=config,
            results=rows,
            report="\n".join(lines),
        )
    return rows


def _system_table(rows: list[dict]) -> list[str]:
    """One-step NRMSE of each run per system, and the windows each system's number averages."""
    systems = sorted({s for w in rows for s in w.get("eval_nrmse_by_system", {})})
    if not systems:
        return ["One-step NRMSE per system: not recorded by these runs."]
    windows = sorted(
        {f"{s} {n}" for w in rows for s, n in w.get("eval_windows_by_system", {}).items()}
    )
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [
        "One-step NRMSE per system (model / persistence); windows scored per system: "
        + (", ".join(windows) or "not recorded"),
        "",
        "| run | " + " | ".join(systems) + " |",
        "|---|" + "---|" * len(systems),
    ]
    for w in rows:
        m, p = w.get("eval_nrmse_by_system", {}), w.get("persistence_nrmse_by_system", {})
        cells = [f"{fmt(m.get(s))} / {fmt(p.get(s))}" for s in systems]
        lines.append(f"| {w['run']} | " + " | ".join(cells) + " |")
    return lines


def main(cfg: BackboneCompare, command: str | None = None) -> dict:
    """Trains the surrogate with ``cfg.mixer`` and ``cfg.ffn``, records cost and the command,
    rebuilds the comparison table."""
    command = command or command_line()
    cfg = with_trunk(cfg)
    if cfg.cost_only:
        if not os.path.exists(os.path.join(cfg.workdir, "results.json")):
            raise SystemExit(f"--cost_only: no results.json in {cfg.workdir}; train it first")
    else:
        train(cfg)
    trunk = {"trunk": f"{cfg.mixer}+{cfg.ffn}", "mixer": cfg.mixer, "ffn": cfg.ffn}
    extra = {**trunk, "step_time_s": median_step_time(cfg.workdir), **step_cost(cfg)}
    extra |= {"cost_command": command} if cfg.cost_only else {"command": command}
    if not cfg.cost_only:
        extra["cost_command"] = None  # a retrained run's costs are this run's
    results = write_results(cfg.workdir, extra)
    parent = os.path.dirname(os.path.abspath(cfg.workdir))
    where = cfg.results_dir or parent
    rows = write_table(parent, where)
    print(f"backbone table ({len(rows)} runs): {os.path.join(where, 'report.md')}")
    return results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, BackboneCompare, PRESETS, doc=__doc__)
