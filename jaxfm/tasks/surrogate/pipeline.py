"""The multi-physics surrogate pipeline: data, pretraining, fine-tuning, rollout evaluation.

Shared by ``experiments/surrogate_{pretrain,finetune,rollout,transfer}.py`` and by the demo
(:func:`demo`): the scripts hold presets and a few lines of main, this module the steps.

Data: each system is simulated once by ``jaxfm.data.sim`` (cached as a Well-layout HDF5 file
under ``data.cache_dir``), split by trajectory into train and held-out sets, and windowed
(``n_steps_input`` frames -> the next). Pretraining mixes systems with
``jaxfm.data.mixture.MixtureWindows`` (one system per micro-batch, uniform over systems, as
MPP's ``MultisetSampler``); every example is padded to ``data.pad_fields`` channels (field id
-1) so batches that the engine shuffles across systems still stack. Boundary conditions come
from the simulators (``TrajectorySet.bc``) through a system -> periodic table.

Evaluation: one-step errors on the held-out windows of every system
(:class:`jaxfm.data.eval_windows.StratifiedWindows`: the whole split, or with
``train.eval_batches`` set, ``eval_batches * batch_size / n_systems`` windows of each system
spread over its trajectories and start frames), reported per system, per field and as the
mean over systems; rollouts on the held-out trajectories over The Well's windows (steps 1,
2-5, 6-12, 13-30, as far as the trajectories reach), from the last or the best checkpoint
(``eval.checkpoint``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfm.config import ExperimentConfig, load_json
from jaxfm.data.eval_windows import StratifiedWindows, pad_example  # noqa: F401 (re-export)
from jaxfm.data.fields import N_FIELDS, default_field_registry, default_system_registry
from jaxfm.data.mixture import MixtureWindows
from jaxfm.data.sim.registry import SYSTEMS, simulate
from jaxfm.data.sim.system import finetune_systems, pad_width, pretrain_systems
from jaxfm.data.trajectories import TrajectorySet
from jaxfm.data.well import read_well, write_well
from jaxfm.data.windows import WindowSource
from jaxfm.tasks.surrogate.rollout import ROLLOUT_STEPS, per_step_errors, rollout, window_means
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from jaxfm.train import load_model, run, write_results

PRETRAIN_SYSTEMS = pretrain_systems(SYSTEMS)
"""MPP's pretraining mix without compressible flow: every 2-D system not held out, in
``mix_order`` (shallow water, diffusion-reaction, incompressible NS, Gray-Scott)."""

FINETUNE_SYSTEMS = finetune_systems(SYSTEMS)
"""The held-out transfer targets (the two compressible systems)."""

PAD_FIELDS = pad_width(SYSTEMS)
"""Channels every example is padded to: the most fields of any 2-D system (compressible flow's
four), so pretraining and fine-tuning batches have one width."""


@dataclasses.dataclass(frozen=True)
class PDEDataConfig:
    """Simulated multi-system PDE data."""

    systems: tuple[str, ...] = PRETRAIN_SYSTEMS
    """Systems (names in jaxfm.data.sim.registry.SIMULATORS)."""
    n_train: int = 48
    """Training trajectories per system."""
    n_eval: int = 8
    """Held-out trajectories per system (one-step eval windows and rollouts)."""
    resolution: int = 64
    """Grid points per axis."""
    n_steps: int = 0
    """Frames per trajectory (0: the simulator's default)."""
    n_steps_input: int = 4
    """Input frames per window."""
    pad_fields: int = PAD_FIELDS
    """Channels every example is padded to (>= the most fields of any system)."""
    seed: int = 1234
    """Simulation seed (initial conditions); fixed across training seeds."""
    cache_dir: str = ""
    """Where simulated trajectories are cached (Well-layout HDF5); empty: WORKDIR/pde_cache."""
    epoch_batches: int = 2000
    """Micro-batches per epoch of the system mixture (MPP: 2000)."""


@dataclasses.dataclass(frozen=True)
class SurrogateEvalOptions:
    """The rollout evaluation after training."""

    checkpoint: Literal["last", "best"] = "last"
    """Checkpoint the rollouts score: last (the newest, default) or best (the best by
    ckpt.best_metric among those kept, e.g. eval/nrmse, the mean over systems)."""
    rollout_steps: int = ROLLOUT_STEPS
    """Autoregressive steps (truncated to what the held-out trajectories allow)."""


@dataclasses.dataclass(frozen=True)
class SurrogateExperiment(ExperimentConfig):
    """A surrogate training run (pretraining or fine-tuning)."""

    model: SurrogateTaskConfig = dataclasses.field(default_factory=SurrogateTaskConfig)
    """Architecture, loss and freezing."""
    data: PDEDataConfig = dataclasses.field(default_factory=PDEDataConfig)
    """Systems and windows."""
    eval: SurrogateEvalOptions = dataclasses.field(default_factory=SurrogateEvalOptions)
    """Rollout evaluation after training (which checkpoint, how many steps)."""


# ----------------------------------------------------------------------------- data


def load_system(name: str, n_traj: int, d: PDEDataConfig, cache_dir: str) -> TrajectorySet:
    """``n_traj`` trajectories of system ``name``, simulated once and cached in ``cache_dir``."""
    over = {"resolution": d.resolution, **({"n_steps": d.n_steps} if d.n_steps else {})}
    tag = f"{name}_r{d.resolution}_t{d.n_steps or 'def'}_n{n_traj}_s{d.seed}.h5"
    path = os.path.join(cache_dir, tag)
    if os.path.exists(path):
        return read_well(path)
    ts = simulate(name, n_traj, d.seed, **over)
    os.makedirs(cache_dir, exist_ok=True)
    write_well(ts, path)
    return ts


def periodic_table(sets: dict[str, TrajectorySet]) -> np.ndarray:
    """(n_systems, 2) bool: periodic (H, W) of each system id of the default registry."""
    reg = default_system_registry()
    table = np.zeros((len(reg), 2), bool)
    for name, ts in sets.items():
        table[reg.id(name)] = [b == "periodic" for b in ts.bc[:2]]
    return table


@dataclasses.dataclass
class PDEData:
    """Train/eval sources and held-out trajectories of a data config."""

    train: Any
    eval: Any
    held_out: dict[str, TrajectorySet]
    periodic: np.ndarray


def build_data(d: PDEDataConfig, batch_size: int, seed: int, workdir: str) -> PDEData:
    """Simulates (or loads) every system and builds the sources."""
    cache = d.cache_dir or os.path.join(workdir, "pde_cache")
    sets = {name: load_system(name, d.n_train + d.n_eval, d, cache) for name in d.systems}
    train, evals, held = [], [], {}
    for name, ts in sets.items():
        tr, ev = ts.subset(slice(0, d.n_train)), ts.subset(slice(d.n_train, None))
        train.append(WindowSource(tr, d.n_steps_input, 1))
        evals.append(WindowSource(ev, d.n_steps_input, 1))
        held[name] = ev
    mix = MixtureWindows(
        train, micro_batch=batch_size, seed=seed, length=d.epoch_batches, pad_fields=d.pad_fields
    )
    # Every held-out window of every system; the engine's eval cap (train.eval_batches) takes
    # an equal, evenly spread share of each system from it, never the head of the list.
    eval_set = StratifiedWindows(evals, pad=d.pad_fields)
    return PDEData(mix, eval_set, held, periodic_table(sets))


# ----------------------------------------------------------------------------- training


def check_field_slots(model: SurrogateTaskConfig, n_fields: int = N_FIELDS) -> None:
    """Raise unless the AViT's field vocabulary has a row for each of ``n_fields`` field ids
    (default: every simulated field, :data:`jaxfm.data.fields.N_FIELDS`)."""
    if model.arch == "avit" and model.avit.n_fields < n_fields:
        raise ValueError(
            f"model.avit.n_fields = {model.avit.n_fields} but the field registry has "
            f"{n_fields} fields; raise n_fields to at least {n_fields}"
        )


def train(cfg: SurrogateExperiment) -> dict:
    """Trains the surrogate of ``cfg`` (pretraining, fine-tuning or a baseline); results."""
    check_field_slots(cfg.model)
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed, cfg.workdir)
    task = SurrogateTask(cfg.model, data.periodic)
    registry = default_field_registry()
    results = run(
        cfg,
        task,
        data.train,
        data.eval,
        meta={"fields": list(registry.names), "systems": list(cfg.data.systems)},
    )
    # Rollout plots (truth / prediction / error over time; error vs step) for every held-out
    # system, next to the run's other outputs.
    roll = evaluate_rollouts(
        cfg, task=task, data=data, max_steps=cfg.eval.rollout_steps, plot_dir=cfg.workdir
    )
    return write_results(cfg.workdir, {"rollout": roll, **results})


def eval_windows(data: PDEData, train_cfg: Any):
    """The eval windows a run of ``train_cfg`` scores: the whole held-out split, or with
    ``eval_batches`` set, that many batches' worth split equally over the systems."""
    cap = train_cfg.eval_batches * train_cfg.batch_size
    return data.eval.limit(cap) if cap and len(data.eval) > cap else data.eval


def score_one_step(task: SurrogateTask, model, source, batch_size: int) -> dict[str, float]:
    """One-step errors of ``model`` on every window of ``source`` (no ``eval/`` prefix): per
    system, per field and the mean over systems, exactly as the training engine reports
    them (:meth:`SurrogateTask.eval_summary`), plus ``windows``."""
    from jaxfm.train.loop import collect_examples

    graphdef, state = nnx.split(model)
    step = jax.jit(lambda st, b: task.eval_examples(nnx.merge(graphdef, st), b))
    rows = collect_examples(lambda b: step(state, b), source, batch_size=batch_size)
    return task.eval_summary(rows)


# ----------------------------------------------------------------------------- rollouts


def _padded_trajectories(ts: TrajectorySet, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = ts.data.shape[-1]
    data = np.pad(ts.data, [(0, 0)] * (ts.data.ndim - 1) + [(0, k - c)])
    ids = np.pad(default_field_registry().ids(ts.field_names), (0, k - c), constant_values=-1)
    return data.astype(np.float32), ids


def rollout_predictions(
    model, traj: np.ndarray, ids: np.ndarray, periodic, n_in: int, n_steps: int
) -> np.ndarray:
    """(N, n_steps, H, W, C) autoregressive predictions from the first ``n_in`` frames."""
    n = traj.shape[0]
    ids_b = jnp.broadcast_to(jnp.asarray(ids), (n, ids.shape[0]))
    per = jnp.broadcast_to(jnp.asarray(periodic, bool), (n, 2))

    graphdef, state = nnx.split(model)

    @jax.jit
    def go(state, ctx):
        def step(window):
            # A fresh module inside the scan body: layers that sow auxiliary losses (MoE)
            # mutate it at the scan's trace level, and what they sow is dropped with it.
            return nnx.merge(graphdef, state)(window, ids_b, periodic=per)

        return rollout(step, ctx, n_steps)

    return np.asarray(go(state, jnp.asarray(traj[:, :n_in])))


def evaluate_rollouts(
    cfg: SurrogateExperiment,
    *,
    task=None,
    data=None,
    model=None,
    max_steps: int = ROLLOUT_STEPS,
    plot_dir: str | None = None,
    checkpoint: str | None = None,
) -> dict:
    """Rollout errors (NRMSE, VRMSE; per window, step and field) of the model and of
    persistence, per system.

    Loads a checkpoint of ``cfg.workdir`` when ``model`` is None: ``checkpoint`` (``last`` or
    ``best``; default ``cfg.eval.checkpoint``). Rolls out ``max_steps`` steps (fewer when the
    held-out trajectories are shorter). Writes ``rollout.json`` and, with ``plot_dir``, plots
    per system.

    Returns:
      system -> {"model" | "persistence" -> metric -> {"windows", "per_step", "mean_5",
      "fields": field -> {"windows", "mean_5"}}, "trajectories", "steps", "checkpoint"}.
    """
    d = cfg.data
    data = data or build_data(d, cfg.train.batch_size, cfg.train.seed, cfg.workdir)
    task = task or SurrogateTask(cfg.model, data.periodic)
    which = "given" if model is not None else checkpoint or cfg.eval.checkpoint
    model = model or load_model(cfg.workdir, task, cfg, checkpoint=which)
    reg = default_system_registry()
    out = {}
    for name, ts in data.held_out.items():
        traj, ids = _padded_trajectories(ts, d.pad_fields)
        steps = min(max_steps, traj.shape[1] - d.n_steps_input)
        if steps < 1:
            continue
        truth = traj[:, d.n_steps_input : d.n_steps_input + steps]
        pred = rollout_predictions(
            model, traj, ids, data.periodic[reg.id(name)], d.n_steps_input, steps
        )
        persist = np.repeat(traj[:, d.n_steps_input - 1 : d.n_steps_input], steps, axis=1)
        res = {
            label: _rollout_errors(p, truth, ids, ts.field_names)
            for label, p in (("model", pred), ("persistence", persist))
        }
        out[name] = {**res, "trajectories": int(traj.shape[0]), "steps": steps, "checkpoint": which}
        if plot_dir:
            from jaxfm.tasks.surrogate.plots import plot_error_vs_step, plot_rollout

            plot_rollout(
                os.path.join(plot_dir, f"rollout_{name}.png"),
                truth[0],
                pred[0],
                ts.field_names,
                title=name,
            )
            plot_error_vs_step(os.path.join(plot_dir, f"error_vs_step_{name}.png"), res, title=name)
    if jax.process_index() == 0:
        with open(os.path.join(cfg.workdir, "rollout.json"), "w") as f:
            json.dump(out, f, indent=1)
    return out


def _rollout_errors(pred, truth, ids, field_names) -> dict:
    """metric -> windows / per-step / 5-step means over trajectories and valid fields, and the
    same per field (the first ``len(field_names)`` channels are the real ones)."""
    n = pred.shape[0]
    valid = np.broadcast_to(ids >= 0, (n, ids.shape[0]))
    errs = per_step_errors(jnp.asarray(pred), jnp.asarray(truth), ("nrmse", "vrmse"))
    out = {}
    for m, e in errs.items():
        first5 = e[:, :5]
        out[m] = {
            "windows": window_means(e, valid=valid),
            "per_step": [float(e[:, s][valid].mean()) for s in range(e.shape[1])],
            "mean_5": float(first5[np.broadcast_to(valid[:, None], first5.shape)].mean()),
            "fields": {
                field: {
                    "windows": window_means(e[..., c : c + 1]),
                    "mean_5": float(first5[..., c].mean()),
                }
                for c, field in enumerate(field_names)
            },
        }
    return out


def load_run_config(workdir: str) -> SurrogateExperiment:
    """The config a surrogate run was trained with (``WORKDIR/config.json``)."""
    return load_json(SurrogateExperiment, os.path.join(workdir, "config.json"))
