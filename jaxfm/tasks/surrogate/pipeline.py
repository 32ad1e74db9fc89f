"""The multi-physics surrogate pipeline: data, pretraining, fine-tuning, rollout evaluation.

Shared by ``experiments/surrogate_{pretrain,finetune,rollout,transfer}.py`` and by the demo
(:func:`demo`): the scripts hold presets and a few lines of main, this module the steps.

Data: the sources of ``data.paths`` (Well dataset directories, single Well or PDEBench files)
or of ``data.systems`` (built-in simulators, simulated once by ``jaxfm.data.sim`` and cached as
Well-layout HDF5 files under ``data.cache_dir``), resolved per system with train / valid /
test splits by :mod:`jaxfm.tasks.surrogate.sources`, read lazily and windowed
(``n_steps_input`` frames -> the next). Pretraining mixes systems with
``jaxfm.data.mixture.MixtureWindows`` (one system per micro-batch, uniform over systems, as
MPP's ``MultisetSampler``); every example is padded to ``data.pad_fields`` channels (field id
-1) so batches that the engine shuffles across systems still stack. Boundary conditions come
from each source's ``bc`` through a system -> periodic table of the run's system registry.

Field and system names found in the data extend the built-in registries (append-only); the
registries are saved in every checkpoint and a run that builds on a checkpoint (resume,
``init_from``, rollout evaluation) extends the saved ones, or stops naming both lists.

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

from jaxfm.atomic import atomic_path
from jaxfm.ckpt.manager import CKPT_DIR, read_meta
from jaxfm.config import ExperimentConfig, load_json
from jaxfm.data.eval_windows import StratifiedWindows, pad_example  # noqa: F401 (re-export)
from jaxfm.data.fields import N_FIELDS, NameRegistry, default_system_registry
from jaxfm.data.mixture import MixtureWindows
from jaxfm.data.sim.registry import SYSTEMS
from jaxfm.data.sim.system import finetune_systems, pad_width, pretrain_systems
from jaxfm.data.windows import ConcatWindows, WindowSource
from jaxfm.signals import stage
from jaxfm.tasks.surrogate.rollout import ROLLOUT_STEPS, per_step_errors, rollout, window_means
from jaxfm.tasks.surrogate.sources import (
    ROLLOUT_SPLITS,
    SystemData,
    field_registry,
    resolve_sources,
    system_registry,
)
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from jaxfm.train import load_model, run, write_results
from jaxfm.train.loop import check_resumable

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
    """Multi-system PDE data: files on disk and/or built-in simulators
    (:mod:`jaxfm.tasks.surrogate.sources` says which split does what)."""

    paths: tuple[str, ...] = ()
    """Data sources, comma-separated: Well dataset directories (or a root of them, like
    `make data`'s runs/data), single Well or PDEBench HDF5 files, folders of such files, or
    simulator names (a string that is no existing path). Empty: the simulators of systems."""
    systems: tuple[str, ...] = PRETRAIN_SYSTEMS
    """Built-in simulators (jaxfm.data.sim.registry.SIMULATORS), used when paths is empty."""
    n_train: int = 48
    """Training trajectories per simulated system (files keep all of theirs)."""
    n_eval: int = 8
    """Held-out (valid) trajectories per simulated system: one-step eval windows, rollouts."""
    n_rollout: int = 8
    """Held-out trajectories rolled out per system (the first ones of the split; only their
    frames are read). 0: all of them."""
    check_finite: bool = False
    """Scan every data file for NaN/Inf before training (reads every frame once, so off by
    default; a non-finite loss stops training either way)."""
    resolution: int = 64
    """Grid points per axis."""
    n_steps: int = 0
    """Frames per trajectory (0: the simulator's default)."""
    n_steps_input: int = 4
    """Input frames per window."""
    time_strides: tuple[int, ...] = (1,)
    """Frame strides of the training windows: each stride's windows join the system's pool
    (stride k: frames k apart, the target k frames ahead), so the model sees several time
    steps. Evaluation and rollouts stay at stride 1."""
    pad_fields: int = PAD_FIELDS
    """Channels every example is padded to (>= the most fields of any system)."""
    seed: int = 1234
    """Simulation seed (initial conditions); fixed across training seeds."""
    cache_dir: str = ""
    """Where simulated trajectories are cached (Well-layout HDF5); empty: WORKDIR/pde_cache."""
    epoch_batches: int = 2000
    """Micro-batches per epoch of the system mixture (MPP: 2000)."""

    def validate(self) -> list[tuple[str, str]]:
        """(key, problem) of every setting that cannot work, before anything is simulated."""
        bad = []
        for key in ("resolution", "n_steps_input", "pad_fields", "epoch_batches", "n_train"):
            if getattr(self, key) < 1:
                bad.append((key, f"must be >= 1, got {getattr(self, key)}"))
        for key in ("n_eval", "n_rollout", "n_steps"):
            if getattr(self, key) < 0:
                bad.append((key, f"must be >= 0, got {getattr(self, key)}"))
        if not self.time_strides or min(self.time_strides) < 1:
            bad.append(("time_strides", f"must be >= 1 each, got {self.time_strides}"))
        return bad


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

    def validate(self) -> list[tuple[str, str]]:
        """Checks across sections: the simulated grid must split into the AViT's patches."""
        patch = self.model.avit.patch
        if self.model.arch == "avit" and not self.data.paths and self.data.resolution % patch:
            return [
                (
                    "data.resolution",
                    f"{self.data.resolution} is not divisible by model.avit.patch_strides "
                    f"{self.model.avit.patch_strides} (patch {patch})",
                )
            ]
        return []


# ----------------------------------------------------------------------------- data


def periodic_table(sets, registry: NameRegistry | None = None) -> np.ndarray:
    """(n_systems, 2) bool: periodic (H, W) of each system id of ``registry``.

    Args:
        sets: system name -> anything with a ``bc`` (a source's trajectories, a
            :class:`SystemData`).
        registry: the run's system registry (default: the built-in one).
    """
    reg = registry or default_system_registry()
    table = np.zeros((len(reg), 2), bool)
    for name, ts in sets.items():
        table[reg.id(name)] = [b == "periodic" for b in ts.bc[:2]]
    return table


@dataclasses.dataclass
class PDEData:
    """Train/eval sources and held-out trajectories of a data config.

    Attributes:
        train: the system mixture of training windows.
        eval: the one-step eval windows (valid splits).
        held_out: system -> lazy valid trajectories (the rollout evaluation's).
        periodic: the system-id -> (H, W) periodic table.
        sources: every system's lazy splits (``sources[i].split("test")`` for final scoring).
        fields, systems: the run's registries.
    """

    train: Any
    eval: Any
    held_out: dict[str, Any]
    periodic: np.ndarray
    sources: list[SystemData]
    fields: NameRegistry
    systems: NameRegistry


def build_data(
    d: PDEDataConfig,
    batch_size: int,
    seed: int,
    workdir: str,
    saved: list[dict] | tuple = (),
    progress: bool = True,
    n_steps_output: int = 1,
) -> PDEData:
    """Resolves every source (simulating what is not cached) and builds the lazy sources.

    Args:
        d: the data config.
        batch_size: micro-batch of the mixture.
        seed: mixture seed.
        workdir: the run (simulator cache default: WORKDIR/pde_cache).
        saved: metadata of checkpoints the run builds on (:func:`saved_meta`); their
            registries are extended (``checkpoint``: where it came from, for messages).
        progress: print progress while indexing folders of many files.
        n_steps_output: target frames of each training window (the task's ``unroll``);
            eval windows always have one.
    """
    cache = d.cache_dir or os.path.join(workdir, "pde_cache")
    systems = resolve_sources(d, cache, progress)

    def stored(key):
        return [(m.get("checkpoint", "checkpoint"), m[key]) for m in saved if m.get(key)]

    fields = field_registry(systems, stored("fields"))
    sys_reg = system_registry(systems, stored("system_registry"))

    def windows(trajs, stride=1, n_out=1):
        return WindowSource(
            trajs,
            d.n_steps_input,
            n_out,
            stride,
            fields=fields,
            systems=sys_reg,
            check_finite=d.check_finite and stride == 1,
        )

    def train_windows(trajs):
        per_stride = [windows(trajs, k, n_steps_output) for k in d.time_strides]
        return per_stride[0] if len(per_stride) == 1 else ConcatWindows(per_stride)

    train, evals, held = [], [], {}
    for s in systems:
        train.append(train_windows(s.train))
        evals.append(windows(s.split("valid")))
        held[s.system] = s.split("valid")
    mix = MixtureWindows(
        train, micro_batch=batch_size, seed=seed, length=d.epoch_batches, pad_fields=d.pad_fields
    )
    periodic = periodic_table({s.system: s for s in systems}, sys_reg)
    # Every held-out window of every system; the engine's eval cap (train.eval_batches) takes
    # an equal, evenly spread share of each system from it, never the head of the list.
    eval_set = StratifiedWindows(evals, pad=d.pad_fields)
    return PDEData(mix, eval_set, held, periodic, systems, fields, sys_reg)


def surrogate_task(model: SurrogateTaskConfig, data: PDEData) -> SurrogateTask:
    """The task of ``model`` on ``data``: its periodic table, metrics named by its registries."""
    return SurrogateTask(
        model, data.periodic, system_names=data.systems.names, field_names=data.fields.names
    )


def registry_meta(data: PDEData) -> dict:
    """What a checkpoint keeps of the data: registries (for the append-only check) and the
    systems trained on."""
    return {
        "fields": list(data.fields.names),
        "system_registry": list(data.systems.names),
        "systems": [s.system for s in data.sources],
    }


def checkpoint_meta(path: str) -> dict | None:
    """The newest checkpoint's metadata under ``path``, with ``checkpoint`` set to ``path``."""
    meta = read_meta(path)
    return None if meta is None else {**meta, "checkpoint": path}


def saved_meta(cfg: ExperimentConfig) -> list[dict]:
    """Metadata of the checkpoint a run builds on: its own newest one (resume; ``init_from``
    is then ignored, as by the training loop), else ``init_from``'s, else none."""
    if os.path.isdir(os.path.join(cfg.workdir, CKPT_DIR)):
        meta = checkpoint_meta(cfg.workdir)
        if meta is not None:
            return [meta]
    if cfg.init_from:
        meta = checkpoint_meta(cfg.init_from)
        if meta is not None:
            return [meta]
    return []


# ----------------------------------------------------------------------------- training


def check_field_slots(model: SurrogateTaskConfig, fields: NameRegistry | int = N_FIELDS) -> None:
    """Raise unless the AViT's field vocabulary has a row for every field id of ``fields`` (a
    registry, or a count; default: every simulated field, :data:`jaxfm.data.fields.N_FIELDS`);
    the message names the first field without a row and the config key that adds rows."""
    n, rows = (fields if isinstance(fields, int) else len(fields)), model.avit.n_fields
    if model.arch != "avit" or rows >= n:
        return
    what = (
        f"the field registry has {n} fields"
        if isinstance(fields, int)
        else f"field {fields.names[rows]!r} (id {rows}) has no row ({n} fields in the registry)"
    )
    raise ValueError(
        f"model.avit.n_fields = {rows} but {what}; raise model.avit.n_fields to at least {n}"
    )


def train(cfg: SurrogateExperiment) -> dict:
    """Trains the surrogate of ``cfg`` (pretraining, fine-tuning or a baseline); results."""
    check_resumable(cfg)  # before simulating into the workdir: a refused resume writes nothing
    data = build_data(
        cfg.data,
        cfg.train.batch_size,
        cfg.train.seed,
        cfg.workdir,
        saved=saved_meta(cfg),
        n_steps_output=cfg.model.unroll,
    )
    check_field_slots(cfg.model, data.fields)
    task = surrogate_task(cfg.model, data)
    results = run(cfg, task, data.train, data.eval, meta=registry_meta(data))
    # Rollout plots (truth / prediction / error over time; error vs step) for every held-out
    # system, next to the run's other outputs.
    with stage("while evaluating rollouts", saved=f"the trained model is saved in {cfg.workdir}"):
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
    # Batches go where the parameters are (a model restored onto a mesh is replicated over
    # it), so the step needs no implicit transfer.
    where = jax.tree.leaves(state)[0].sharding
    if isinstance(where, jax.sharding.NamedSharding):
        where = jax.sharding.NamedSharding(where.mesh, jax.sharding.PartitionSpec())
    rows = collect_examples(
        lambda b: step(state, b),
        source,
        batch_size=batch_size,
        put=lambda b: jax.device_put(b, where),
    )
    return task.eval_summary(rows)


# ----------------------------------------------------------------------------- rollouts


def _padded_trajectories(
    trajs, k: int, fields: NameRegistry, n_traj: int, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_traj`` trajectories (0: all), frames ``[0, n_frames)``, padded to ``k``
    channels: read from the lazy collection, nothing else."""
    n = trajs.n_traj if n_traj <= 0 else min(n_traj, trajs.n_traj)
    data = np.stack([trajs.read(i, 0, n_frames) for i in range(n)])
    c = data.shape[-1]
    data = np.pad(data, [(0, 0)] * (data.ndim - 1) + [(0, k - c)])
    ids = np.pad(fields.ids(trajs.field_names), (0, k - c), constant_values=-1)
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


MAX_PLOTTED_FIELDS = 4
"""Rollout plots show every field of a system up to this many (three rows each)."""


def evaluate_rollouts(
    cfg: SurrogateExperiment,
    *,
    task=None,
    data=None,
    model=None,
    max_steps: int = ROLLOUT_STEPS,
    plot_dir: str | None = None,
    split: str = "valid",
    checkpoint: str | None = None,
) -> dict:
    """Rollout errors (NRMSE, VRMSE; per window, step and field) of the model and of
    persistence, per system.

    Rolls out the first ``data.n_rollout`` trajectories of ``split`` (valid, or test for final
    scoring) of every system, reading only those trajectories' first frames, ``max_steps``
    steps (fewer when the trajectories are shorter). Loads a checkpoint of ``cfg.workdir``
    when ``model`` is None: ``checkpoint`` (``last`` or ``best``; default
    ``cfg.eval.checkpoint``), whose saved registries are extended as in training. Writes
    ``rollout.json`` (``rollout_test.json`` for the test split) and, with ``plot_dir``, plots
    per system (``rollout[_test]_<system>.png``, ``error_vs_step[_test]_<system>.png``).

    Returns:
      system -> {"model" | "persistence" -> metric -> {"windows", "per_step", "mean_5",
      "fields": field -> {"windows", "mean_5"}}, "trajectories", "steps", "checkpoint"}.
    """
    d = cfg.data
    if split not in ROLLOUT_SPLITS:
        raise ValueError(f"rollout split {split!r}: choose one of {ROLLOUT_SPLITS}")
    if data is None:
        saved = [m for m in [checkpoint_meta(cfg.workdir)] if m is not None]
        data = build_data(d, cfg.train.batch_size, cfg.train.seed, cfg.workdir, saved=saved)
    task = task or surrogate_task(cfg.model, data)
    which = "given" if model is not None else checkpoint or cfg.eval.checkpoint
    model = model or load_model(cfg.workdir, task, cfg, checkpoint=which)
    reg = data.systems
    held = data.held_out if split == "valid" else {s.system: s.split(split) for s in data.sources}
    tag = "" if split == "valid" else f"_{split}"  # test scores never overwrite valid's files
    out = {}
    for name, ts in held.items():
        traj, ids = _padded_trajectories(
            ts, d.pad_fields, data.fields, d.n_rollout, d.n_steps_input + max_steps
        )
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
        out[name] = {
            **res,
            "trajectories": int(traj.shape[0]),
            "steps": steps,
            "checkpoint": which,
            "split": split,
        }
        if plot_dir:
            from jaxfm.tasks.surrogate.plots import plot_error_vs_step, plot_rollout

            plot_rollout(
                os.path.join(plot_dir, f"rollout{tag}_{name}.png"),
                truth[0],
                pred[0],
                ts.field_names,
                fields=range(min(len(ts.field_names), MAX_PLOTTED_FIELDS)),
                title=f"{name} ({split})",
            )
            plot_error_vs_step(
                os.path.join(plot_dir, f"error_vs_step{tag}_{name}.png"), res, title=name
            )
    if jax.process_index() == 0:
        with atomic_path(os.path.join(cfg.workdir, f"rollout{tag}.json")) as tmp:
            with open(tmp, "w") as f:
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
