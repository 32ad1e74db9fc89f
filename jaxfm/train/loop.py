"""The training loop every experiment runs: :func:`run`.

    config -> WORKDIR/config.json
    mesh + rule table -> shardings -> abstract init -> jit(init) or restore
    loop: next batch -> explicit device_put -> jit(train_step) (transfer guard on)
          -> metrics of the previous step fetched (one step behind, so dispatch stays async)
          -> NaN/Inf guard -> metrics.jsonl + progress/ETA -> eval -> checkpoint
    end: final eval, final checkpoint, results.json

Restore order (one place): a checkpoint in WORKDIR (resume: state, data stream, step) >
``init_from`` (parameters only, for fine-tuning) > fresh initialisation.

SIGTERM (a scheduler's pre-emption notice) finishes the current step, saves a checkpoint,
writes ``status = "terminated"`` to results.json and raises :class:`Preempted` (exit status
143): a script that chains runs (pretrain, then fine-tune from it) must stop there, not go on
from an unfinished model. One that lands during the last step or the final save leaves the
run finished (``status = "finished"``) and still raises :class:`Preempted`, so nothing after
it starts; outside the loop :mod:`jaxfm.signals` keeps the same contract. SIGKILL loses
at most the steps since the last checkpoint, and the resumed run then repeats them bit for bit
(same data, same RNG).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxfm.ckpt.manager import (
    CKPT_DIR,
    UNREADABLE_DIR,
    Checkpointer,
    CheckpointError,
    IncompatibleCheckpointError,
    checkpoint_dir,
)
from jaxfm.config import ConfigError, from_dict, to_dict
from jaxfm.data.pipeline import check_batch, make_dataset
from jaxfm.parallel.distributed import initialize
from jaxfm.parallel.mesh import batch_size_per_shard, make_mesh
from jaxfm.train.lock import WorkdirLock
from jaxfm.train.step import Engine, State, split_model
from jaxfm.train.task import Task
from jaxfm.train.writer import MetricWriter, Progress


class NonFiniteError(FloatingPointError):
    """Loss or gradient norm became NaN/Inf; the message names the step and the metric."""


class ConfigMismatchError(ValueError):
    """The workdir holds a run whose model/data config differs from the requested one."""


# ----------------------------------------------------------------------------- helpers


#: Model settings that change how the model runs, not its parameters or what it computes:
#: a run may resume with them changed (e.g. scanned after unrolled, with remat to fit memory).
EXECUTION_ONLY_KEYS = frozenset({"scan_layers", "remat"})


def check_resumable(cfg: Any) -> None:
    """Raises :class:`ConfigMismatchError` when ``cfg.workdir`` holds checkpoints of a run
    whose model or data config differs from ``cfg`` (or whose config.json is unreadable).

    :func:`run` calls it first; a pipeline that prepares data before ``run`` (simulating,
    caching into the workdir) calls it before that, so a refused resume writes nothing."""
    ckpt_dir = os.path.join(cfg.workdir, CKPT_DIR)
    has_ckpt = os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir))
    config_path = os.path.join(cfg.workdir, "config.json")
    if has_ckpt and os.path.exists(config_path):
        _check_same_run(config_path, cfg)


def _check_same_run(path: str, cfg: Any) -> None:
    """Refuses to resume a workdir whose model or data sections differ (names the key).

    The saved config is first read back through the config classes (``from_dict``), so a file
    written before a field was renamed or regrouped (a ``migrate_dict``) compares by meaning,
    not by layout; a file they cannot read is compared as saved.
    """
    new = to_dict(cfg)
    with open(path) as f:
        try:
            old = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigMismatchError(
                f"{path} is not valid JSON ({e.msg}, line {e.lineno}); restore it, or use a new "
                "--workdir (nothing in this one was changed)"
            ) from None
    try:
        old = to_dict(from_dict(type(cfg), old, where=path))
    except (ConfigError, TypeError, ValueError):
        pass

    def diff(a, b, prefix):
        for k in sorted(set(a) | set(b)):
            va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
            if isinstance(va, dict) and isinstance(vb, dict):
                yield from diff(va, vb, f"{prefix}{k}.")
            elif va != vb and k not in EXECUTION_ONLY_KEYS:
                yield f"{prefix}{k}", va, vb

    for section in ("model", "data"):
        for key, va, vb in diff(old.get(section, {}), new.get(section, {}), f"{section}."):
            raise ConfigMismatchError(
                f"{path} was written with {key}={va!r}, but this run has {key}={vb!r}; "
                f"use a new --workdir (nothing in the old one was changed)"
            )


def _config_diffs(old: dict, new: dict, prefix: str = ""):
    """``(key, old value, new value)`` for every leaf that differs, keys dotted."""
    for k in sorted(set(old) | set(new)):
        va, vb = old.get(k, "<missing>"), new.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _config_diffs(va, vb, f"{prefix}{k}.")
        elif va != vb:
            yield f"{prefix}{k}", va, vb


def _explain_refused_resume(path: str, cfg: Any, error: CheckpointError) -> CheckpointError:
    """A one-line CheckpointError naming the ``train`` settings that changed since the save.

    The optimizer state's layout follows settings such as ``train.optimizer`` or
    ``train.clip_norm``; changing one makes the checkpoint unreadable into the new state, and
    the restore error alone names neither the key nor the way out.
    """
    if not os.path.exists(path):
        return error
    with open(path) as f:
        old = json.load(f)
    diffs = list(_config_diffs(old.get("train", {}), to_dict(cfg).get("train", {}), "train."))
    if not diffs:
        return error
    changed = "; ".join(f"{k}: {a!r} in the checkpoint's config, {b!r} now" for k, a, b in diffs)
    return CheckpointError(
        f"cannot resume {os.path.dirname(path)} with changed settings ({changed}); use the saved "
        f"values, a new --workdir, or --init_from {os.path.dirname(path)} to take only the "
        "parameters"
    )


def _refuse_scratch_over_unreadable(workdir: str, ckpt: Checkpointer, restart: bool) -> None:
    """Refuses to start from scratch where every checkpoint was moved aside as unreadable:
    that would silently replace the old run's metrics. ``restart=True`` asks for it."""
    unreadable = os.path.join(workdir, UNREADABLE_DIR)
    if restart or ckpt.steps() or not os.path.isdir(unreadable) or not os.listdir(unreadable):
        return
    raise CheckpointError(
        f"{workdir} has no readable checkpoint left (they were moved to {unreadable}/); "
        "pass --restart true to start this workdir over, or use a new --workdir"
    )


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=float)
    os.replace(tmp, path)


def write_results(workdir: str, results: dict) -> dict:
    """Merges ``results`` into ``WORKDIR/results.json`` (process 0) and returns the whole."""
    path = os.path.join(workdir, "results.json")
    merged = {}
    if os.path.exists(path):
        with open(path) as f:
            merged = json.load(f)
    merged.update(results)
    if jax.process_index() == 0:
        _write_json(path, merged)
    return merged


class Preempted(SystemExit):
    """Raised by :func:`run` after SIGTERM, once the checkpoint and results are written."""

    def __init__(self, workdir: str, step: int):
        super().__init__(143)  # 128 + SIGTERM, what a shell reports for a terminated job
        self.workdir, self.step = workdir, step


class _Sigterm:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self):
        self.received = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _finite_or_raise(step: int, metrics: dict, enabled: bool) -> None:
    if not enabled:
        return
    for key in ("loss", "grad_norm"):
        if key in metrics and not math.isfinite(float(metrics[key])):
            raise NonFiniteError(
                f"{key} is {float(metrics[key])} at step {step}; stopping (the last good "
                f"checkpoint is kept). Lower train.lr, check the data, or set "
                f"train.crash_on_nan=false to continue anyway"
            )


def evaluate(
    engine: Engine, state: State, source: Any, *, batch_size: int, max_batches: int = 0
) -> dict[str, float]:
    """The task's eval metrics over ``source`` (one pass, fixed order), as ``eval/<name>``.

    A task with ``eval_examples`` (see :class:`jaxfm.train.task.Task`) is scored exactly: every
    example counted once (the last batch padded, the padding dropped on the host), and its
    ``eval_summary`` (default: the mean over examples) gives the metrics. ``max_batches`` caps
    the examples at ``max_batches * batch_size``: a source with ``limit(n)`` (e.g.
    :class:`jaxfm.data.eval_windows.StratifiedWindows`) turns that into a sample spread over
    the whole source, any other source gives its first ones. The count scored is printed.

    A task with only ``eval_metrics`` gets the mean of its per-batch metrics over the full
    batches (the first ``max_batches``; a last incomplete batch is not scored).
    """
    if hasattr(engine.task, "eval_examples"):
        return _evaluate_examples(
            engine, state, source, batch_size=batch_size, max_batches=max_batches
        )
    shards = batch_size_per_shard(engine.mesh)
    bs = min(batch_size, len(source) // shards * shards)
    if bs <= 0:
        raise ValueError(
            f"eval set of {len(source)} examples is smaller than the {shards} data-parallel shards"
        )
    ds = make_dataset(
        source,
        batch_size=bs,
        seed=0,
        shuffle=False,
        num_epochs=1,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    step_fn = engine.eval_step()
    sums: dict[str, float] = {}
    n = 0
    it = iter(ds)
    for batch in it:
        batch = engine.put_batch(batch)  # the explicit copy, outside the guard
        with jax.transfer_guard("disallow"):
            metrics = step_fn(state, batch)
        for k, v in jax.device_get(metrics).items():
            sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64)
        n += 1
        if max_batches and n >= max_batches:
            break
    return {f"eval/{k}": (v / max(n, 1)).tolist() for k, v in sums.items()}


class _Head:
    """The first ``n`` examples of a source (for a capped eval of a source without limit)."""

    def __init__(self, source: Any, n: int):
        self.source, self.n = source, min(n, len(source))

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"_Head({self.source!r}, {self.n})"

    def __getitem__(self, i: int):
        return self.source[int(i)]


class _PadTo:
    """``source`` followed by copies of its last example up to ``n`` (a whole last batch)."""

    def __init__(self, source: Any, n: int):
        self.source, self.n = source, n

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"_PadTo({self.source!r}, {self.n})"

    def __getitem__(self, i: int):
        return self.source[min(int(i), len(self.source) - 1)]


def describe_source(source: Any) -> str:
    """The source's own description (``describe()``), else its number of examples."""
    return source.describe() if hasattr(source, "describe") else f"{len(source)} examples"


def collect_examples(
    step_fn: Any, source: Any, *, batch_size: int, shards: int = 1, put: Any = None
) -> dict[str, np.ndarray]:
    """``step_fn(batch)``'s per-example outputs over every example of ``source``, in order.

    Batches hold ``batch_size`` examples (fewer for a small source; always a multiple of
    ``shards``); the last one is filled up with copies of the last example, and those rows are
    dropped here, so each example is counted exactly once. ``put`` places a host batch on
    the devices (default: ``jax.device_put``; the step runs under a guard that forbids
    implicit transfers). Returns name -> host array with ``len(source)`` rows.
    """
    n = len(source)
    if n == 0:
        raise ValueError(f"eval source {source!r} has no examples")
    bs = min(batch_size, -(-n // shards) * shards)
    padded = -(-n // bs) * bs
    ds = make_dataset(
        _PadTo(source, padded),
        batch_size=bs,
        seed=0,
        shuffle=False,
        num_epochs=1,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    parts: dict[str, list[np.ndarray]] = {}
    for batch in ds:
        batch = (put or jax.device_put)(batch)  # the explicit copy, outside the guard
        with jax.transfer_guard("disallow"):
            out = step_fn(batch)
        for k, v in jax.device_get(out).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v)[:n] for k, v in parts.items()}


def mean_over_examples(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Default ``eval_summary``: the float64 mean of each floating value over its examples."""
    return {
        k: float(np.mean(np.asarray(v, np.float64)))
        for k, v in values.items()
        if np.issubdtype(np.asarray(v).dtype, np.floating)
    }


def _evaluate_examples(
    engine: Engine, state: State, source: Any, *, batch_size: int, max_batches: int
) -> dict[str, float]:
    if max_batches and len(source) > max_batches * batch_size:
        cap = max_batches * batch_size
        source = source.limit(cap) if hasattr(source, "limit") else _Head(source, cap)
    if jax.process_index() == 0:
        print(f"eval: {describe_source(source)}", flush=True)
    step_fn = engine.eval_step(per_example=True)
    values = collect_examples(
        lambda batch: step_fn(state, batch),
        source,
        batch_size=batch_size,
        shards=batch_size_per_shard(engine.mesh),
        put=engine.put_batch,
    )
    summary = getattr(engine.task, "eval_summary", mean_over_examples)(values)
    return {f"eval/{k}": float(v) for k, v in summary.items()}


def _load_params(path: str, engine: Engine) -> dict:
    """Trainable + frozen parameters of the newest readable checkpoint under ``path``.

    A task may store a model that differs from its own in a way it knows how to bridge (a
    surrogate's field vocabulary that grew): its optional ``checkpoint_task(meta)`` returns the
    task that builds the stored model (or None: restore as is), and ``adapt_model(model)``
    turns that model into this task's; the checkpoint is restored into the stored shapes, then
    adapted.
    """
    directory = checkpoint_dir(path)
    if not os.path.isdir(directory):
        raise CheckpointError(f"--init_from {path}: no such checkpoint directory")
    ckpt = Checkpointer(directory, read_only=True)
    try:
        source = engine
        stored_task = getattr(engine.task, "checkpoint_task", None)
        if stored_task is not None:
            task = stored_task(ckpt.meta() or {})
            if task is not None:
                source = Engine(task, engine.cfg, None, None, engine.mesh, engine.strategy)
        _, state, _ = ckpt.restore(source.abstract_state)
    except CheckpointError as e:
        raise CheckpointError(f"--init_from {path}: {e}") from None
    finally:
        ckpt.close()
    if source is not engine:
        state = _adapted_params(engine, source, state)
    return state


def _adapted_params(engine: Engine, source: Engine, state: State) -> dict:
    """``state``'s parameters, restored for ``source``'s model, moved into ``engine``'s."""
    model = source.model(state)
    engine.task.adapt_model(model)
    _, params, frozen, _ = split_model(model, engine.task)
    return {
        "params": jax.device_put(nnx.to_pure_dict(params), engine.state_sharding["params"]),
        "frozen": jax.device_put(nnx.to_pure_dict(frozen), engine.state_sharding["frozen"]),
    }


# ----------------------------------------------------------------------------- run


def run(
    cfg: Any, task: Task, train_source: Any, eval_source: Any = None, *, meta: dict | None = None
) -> dict[str, Any]:
    """Trains ``task`` on ``train_source`` as configured by ``cfg``; returns the results.

    Args:
      cfg: an ``ExperimentConfig`` (sections ``train``, ``parallel``, ``ckpt``, ``workdir``,
        ``init_from``, plus the experiment's own).
      task: the model family.
      train_source, eval_source: Grain random-access sources of dict examples.
      meta: extra JSON saved in every checkpoint (e.g. the field registry).

    Returns:
      The contents written to ``WORKDIR/results.json``.

    Raises:
      WorkdirLockedError: another live run holds ``WORKDIR/.lock``.
    """
    initialize(cfg.parallel.distributed)
    workdir = os.path.abspath(cfg.workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir} is a file, not a directory")
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() != 0:  # one lock per run: process 0 holds it for all
        return _run_locked(cfg, task, train_source, eval_source, meta=meta)
    with WorkdirLock(workdir):
        return _run_locked(cfg, task, train_source, eval_source, meta=meta)


def _run_locked(
    cfg: Any, task: Task, train_source: Any, eval_source: Any, *, meta: dict | None
) -> dict[str, Any]:
    """The body of :func:`run`, once the workdir's lock is held."""
    tc = cfg.train
    workdir = os.path.abspath(cfg.workdir)
    is_main = jax.process_index() == 0
    config = to_dict(cfg)
    config_path = os.path.join(workdir, "config.json")
    check_resumable(cfg)

    mesh = make_mesh(cfg.parallel)
    check_batch(
        tc.batch_size,
        shards=batch_size_per_shard(mesh),
        process_count=jax.process_count(),
        grad_accum=tc.grad_accum,
    )
    engine = Engine(task, tc, None, None, mesh, cfg.parallel.strategy)

    train_ds = make_dataset(
        train_source,
        batch_size=tc.batch_size,
        seed=tc.seed,
        shuffle=tc.shuffle,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        worker_count=tc.data_workers,
    )
    if tc.data_workers > 0:
        _mark_absl_flags_parsed()
    data_iter = iter(train_ds)
    ckpt = Checkpointer(os.path.join(workdir, CKPT_DIR), cfg.ckpt)
    meta = {"config": config, **(meta or {})}

    # --- restore order: resume > init_from > scratch
    source_of_state = "scratch"
    _refuse_scratch_over_unreadable(workdir, ckpt, getattr(cfg, "restart", False))
    if ckpt.steps():
        try:
            start, state, _ = ckpt.restore(engine.abstract_state, data_iter=data_iter)
        except IncompatibleCheckpointError as e:
            raise _explain_refused_resume(config_path, cfg, e) from None
        source_of_state = f"resumed from step {start}"
    else:
        start = 0
        state = engine.init(tc.seed)
        if cfg.init_from:
            loaded = _load_params(cfg.init_from, engine)
            state = {**state, "params": loaded["params"], "frozen": loaded["frozen"]}
            source_of_state = f"parameters from {cfg.init_from}"
    # written only once the run is accepted: a refused resume leaves the workdir as it was
    if is_main:
        _write_json(config_path, config)
    writer = MetricWriter(workdir, enabled=is_main, tensorboard=tc.tensorboard)
    writer.truncate_after(start)
    if is_main:
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
        print(
            f"jaxfm: {type(task).__name__} | {n_params:,} trainable parameters | "
            f"mesh {dict(mesh.shape)} | {cfg.parallel.strategy} | {source_of_state} | "
            f"workdir {workdir}",
            flush=True,
        )

    progress = Progress(tc.steps, start, tc.batch_size, enabled=is_main and tc.progress)
    train_step = engine.train_step()
    last_eval: dict[str, float] = {}
    last_train: dict[str, float] = {}
    status = "finished"
    t_start = time.perf_counter()

    def save(step: int, st: State) -> None:
        ckpt.save(step, st, data_iter=data_iter, meta=meta, metrics=last_eval or None)

    def finish_step(step: int, metrics) -> None:
        nonlocal last_train
        host = {k: np.asarray(v).tolist() for k, v in jax.device_get(metrics).items()}
        _finite_or_raise(step, host, tc.crash_on_nan)
        last_train = host
        if step % tc.log_every == 0 or step == tc.steps:
            host.update(progress.tick(step))
            writer.write(step, host)
            progress.show(step, host)

    def evaluate_and_log(step: int, st: State) -> dict:
        metrics = evaluate(
            engine, st, eval_source, batch_size=tc.batch_size, max_batches=tc.eval_batches
        )
        writer.write(step, metrics)
        progress.show(step, metrics)
        return metrics

    pending = None  # (step, metrics) of the last dispatched step, fetched one step later
    step = start
    try:
        with _Sigterm() as sigterm:
            while step < tc.steps:
                if sigterm.received:
                    status = "terminated"
                    break
                batch = engine.put_batch(next(data_iter))
                with jax.transfer_guard("disallow"):
                    state, metrics = train_step(state, batch)
                step += 1
                if pending is not None:
                    finish_step(*pending)
                pending = (step, metrics)
                evaluate_now = (
                    eval_source is not None
                    and tc.eval_every
                    and step % tc.eval_every == 0
                    and step < tc.steps
                )
                save_now = cfg.ckpt.every and step % cfg.ckpt.every == 0 and step < tc.steps
                if evaluate_now or save_now:
                    finish_step(*pending)
                    pending = None
                if evaluate_now:
                    last_eval = evaluate_and_log(step, state)
                if save_now:
                    save(step, state)
            if pending is not None:
                finish_step(*pending)
            if status == "finished" and eval_source is not None:
                last_eval = evaluate_and_log(step, state)
            save(step, state)
            # SIGTERM during the last step, the final eval or the final save: the run is
            # finished and saved, but what follows it (rollouts, a fine-tuning) must not start.
            stopped_after_last_step = sigterm.received and status == "finished"
    finally:
        ckpt.close()
        writer.close()
        if hasattr(data_iter, "close"):
            data_iter.close()
    if status == "terminated" and is_main:
        print(
            f"SIGTERM: saved checkpoint at step {step} in {workdir}/{CKPT_DIR}; rerun the "
            f"same command to resume",
            flush=True,
        )
    if stopped_after_last_step and is_main:
        print(
            f"SIGTERM after the last step: training finished and saved at step {step} in "
            f"{workdir}/{CKPT_DIR}; stopping before anything else runs (rerun the same "
            f"command to continue)",
            flush=True,
        )
    results = {
        "status": status,
        "step": step,
        "wall_time_s": time.perf_counter() - t_start,
        "compile_and_first_step_s": progress.compile_s,
        **{f"train/{k}": v for k, v in last_train.items() if np.ndim(v) == 0},
        **last_eval,
    }
    results = write_results(workdir, results)
    if status == "terminated" or stopped_after_last_step:
        raise Preempted(workdir, step)
    return results


def _mark_absl_flags_parsed() -> None:
    """Grain workers read absl flags; outside an absl app they must be marked parsed."""
    try:
        from absl import flags

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
    except ImportError:  # grain without absl: nothing to do
        pass


CHECKPOINTS = ("last", "best")
"""Which checkpoint of a run to load: the newest, or the best by ``ckpt.best_metric``."""


def load_state(
    workdir: str, task: Task, cfg: Any, devices=None, *, checkpoint: str = "last"
) -> tuple[Engine, State, int]:
    """(engine, state, step) of a checkpoint in ``workdir``.

    Args:
      workdir: a run directory (or its checkpoints/ directory).
      task: the model family that wrote it.
      cfg: the run's config (e.g. ``jaxfm.config.load_json(Config, WORKDIR/config.json)``),
        with any ``parallel`` override for the devices at hand.
      devices: devices of the mesh to restore onto (default: all).
      checkpoint: ``last`` (the newest readable one) or ``best`` (the best by the run's
        ``ckpt.best_metric`` among those kept; the newest, with a notice, when none recorded
        it, e.g. a run that never evaluated).
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint {checkpoint!r}: choose one of {', '.join(CHECKPOINTS)}")
    mesh = make_mesh(cfg.parallel, devices)
    engine = Engine(task, cfg.train, None, None, mesh, cfg.parallel.strategy)
    ckpt = Checkpointer(checkpoint_dir(workdir), getattr(cfg, "ckpt", None), read_only=True)
    try:
        step = ckpt.best_step() if checkpoint == "best" else None
        if checkpoint == "best" and step is None and jax.process_index() == 0:
            print(
                f"{workdir}: no checkpoint recorded {ckpt.cfg.best_metric}; using the newest",
                flush=True,
            )
        step, state, _ = ckpt.restore(engine.abstract_state, step=step)
    finally:
        ckpt.close()
    return engine, state, step


def load_model(workdir: str, task: Task, cfg: Any, devices=None, *, checkpoint: str = "last"):
    """The trained NNX model of a checkpoint in ``workdir`` (``checkpoint``: last or best)."""
    engine, state, _ = load_state(workdir, task, cfg, devices, checkpoint=checkpoint)
    return engine.model(state)


__all__ = [
    "CHECKPOINTS",
    "ConfigMismatchError",
    "NonFiniteError",
    "Preempted",
    "collect_examples",
    "evaluate",
    "load_model",
    "load_state",
    "run",
    "write_results",
]
