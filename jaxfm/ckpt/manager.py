"""Orbax checkpoints for jaxfm runs: one wrapper, item names defined once, one restore order.

Layout: ``WORKDIR/checkpoints/<step>/{state, data_iter, meta}``

* ``state``: the train state pytree (step, trainable and frozen parameters, other model
  variables, optimizer state, RNG key), restored *into abstract arrays carrying the current
  mesh's shardings*, so a checkpoint written on 8 devices restores on 1 and vice versa, and
  one written by N processes restores on M.
* ``data_iter``: the Grain iterator state (per process), so a resumed run continues the data
  stream exactly where it stopped.
* ``meta``: JSON (resolved config, field registry, anything a task wants to keep).

Unreadable checkpoints (truncated, missing files) are reported and moved aside to
``WORKDIR/checkpoints_unreadable/`` -- never deleted -- and the previous good one is used.
Saves are asynchronous; :meth:`Checkpointer.close` waits for them.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import sys
import time
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from jaxfm.ckpt.options import CkptConfig

log = logging.getLogger(__name__)

STATE, DATA_ITER, META = "state", "data_iter", "meta"
CKPT_DIR, UNREADABLE_DIR = "checkpoints", "checkpoints_unreadable"


class CheckpointError(RuntimeError, ValueError):
    """No usable checkpoint, or a checkpoint that does not fit the model (one-line message).

    A ValueError too: a checkpoint that does not fit is bad input to the run, not a fault.
    """


class IncompatibleCheckpointError(CheckpointError):
    """A readable checkpoint whose state does not fit the model (or optimizer) of this run."""


class DiskFullError(CheckpointError):
    """A save ran out of disk space (one line: the workdir and the free space)."""


def _saved_process_count(path: str) -> int | None:
    """N of the ``process_<i>-of-<N>.json`` files Grain wrote into ``path`` (None: unknown)."""
    counts = {
        int(m.group(1))
        for name in os.listdir(path)
        if (m := re.fullmatch(r"process_\d+-of-(\d+)\.json", name))
    }
    return counts.pop() if len(counts) == 1 else None


class _Unreadable(Exception):
    """A checkpoint item that is damaged or missing (restore falls back to an older one)."""


def checkpoint_dir(path: str) -> str:
    """``path`` itself if it holds step directories, else ``path/checkpoints``."""
    path = os.path.abspath(path)
    sub = os.path.join(path, CKPT_DIR)
    return sub if os.path.isdir(sub) else path


SCORE_KEY = "checkpoint_metrics"
"""Metadata key of the ``ckpt.best_metric`` value a checkpoint was saved with."""


def read_meta(path: str) -> dict | None:
    """The metadata of the newest checkpoint under ``path`` (a workdir or checkpoints
    directory), read before any model is built; ``None`` when ``path`` holds no checkpoint."""
    directory = checkpoint_dir(path)
    if not os.path.isdir(directory):
        return None
    ckpt = Checkpointer(directory, read_only=True)
    try:
        return ckpt.meta()
    finally:
        ckpt.close()


class Checkpointer:
    """Saves and restores train state, data-iterator state and metadata under ``directory``.

    Args:
      directory: the ``checkpoints`` directory (created if missing).
      cfg: the ``ckpt`` config section.
      read_only: open existing checkpoints without writing or deleting anything.
    """

    def __init__(self, directory: str, cfg: CkptConfig | None = None, *, read_only: bool = False):
        self.cfg = cfg or CkptConfig()
        self.directory = os.path.abspath(directory)
        self.read_only = read_only
        self._manager = self._make_manager()

    def _make_manager(self) -> ocp.CheckpointManager:
        cfg = self.cfg
        policies = [ocm.preservation_policy.LatestN(max(cfg.keep, 1))]
        if cfg.keep_best > 0:
            metric = cfg.best_metric
            policies.append(
                ocm.preservation_policy.BestN(
                    get_metric_fn=lambda m: m[metric],
                    reverse=cfg.best_mode == "min",
                    n=cfg.keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=cfg.async_save and not self.read_only,
            preservation_policy=ocm.preservation_policy.AnyPreservationPolicy(policies),
            create=not self.read_only,
            read_only=self.read_only,
        )
        return ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE, DATA_ITER, META)
        )

    # ----------------------------------------------------------------------------- save

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_iter: Any = None,
        meta: dict | None = None,
        metrics: dict | None = None,
    ) -> None:
        """Starts saving ``state`` (and the iterator / metadata) as checkpoint ``step``."""
        items = {STATE: ocp.args.StandardSave(state)}
        if data_iter is not None:
            items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
        best = None
        if metrics is not None and self.cfg.best_metric in metrics:
            best = {self.cfg.best_metric: float(metrics[self.cfg.best_metric])}
            # Also in the metadata: orbax keeps the ranking metric in memory only, and a
            # later reader (best_step) must find it on disk.
            meta = {**(meta or {}), SCORE_KEY: best}
        if meta is not None:
            items[META] = ocp.args.JsonSave(meta)
        if step in self._manager.all_steps():
            log.info("checkpoint %d already exists; not saving it again", step)
            return
        try:
            self._manager.save(step, args=ocp.args.Composite(**items), metrics=best, force=True)
            # An asynchronous save that fails would otherwise surface only at the next save.
            self._manager.wait_until_finished()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise DiskFullError(self._disk_full_message(step)) from None

    def _disk_full_message(self, step: int) -> str:
        free = shutil.disk_usage(self.directory).free
        kept = [s for s in self.steps() if s != step]
        previous = f"checkpoint {kept[0]} is intact" if kept else "no earlier checkpoint"
        return (
            f"no space left on the device of {os.path.dirname(self.directory)} while saving "
            f"checkpoint {step} ({free / 2**20:.0f} MiB free); {previous}: free some space "
            "and run again to resume"
        )

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    # ----------------------------------------------------------------------------- restore

    def steps(self) -> list[int]:
        """Steps of complete checkpoints, newest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps(), reverse=True)

    def best_step(self) -> int | None:
        """Step of the checkpoint with the best ``cfg.best_metric`` (``cfg.best_mode``), or
        None when no checkpoint recorded that metric (e.g. a run without evaluation)."""
        metric, scored = self.cfg.best_metric, {}
        for step in self.steps():
            try:
                m = (self._restore_meta(step) or {}).get(SCORE_KEY) or {}
            except Exception:  # noqa: BLE001 -- unreadable metadata: not a candidate
                m = {}
            if metric in m and np.isfinite(float(m[metric])):
                scored[step] = float(m[metric])
        if not scored:
            return None
        pick = min if self.cfg.best_mode == "min" else max
        return pick(scored, key=lambda s: (scored[s], -s))

    def restore(
        self, abstract_state: Any, *, data_iter: Any = None, step: int | None = None
    ) -> tuple[int, Any, dict | None]:
        """Restores the newest readable checkpoint (or ``step``) into ``abstract_state``.

        Args:
          abstract_state: pytree of ``jax.ShapeDtypeStruct`` with the target shardings.
          data_iter: a Grain iterator restored in place, if given.
          step: a specific step (no fallback) instead of the newest readable one.

        Returns:
          (step, state, meta). Unreadable newer checkpoints are moved aside with a warning.

        Raises:
          CheckpointError: no readable checkpoint, or shapes that do not fit the model.
        """
        candidates = [step] if step is not None else self.steps()
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        for s in candidates:
            try:
                state = self._restore_item(s, STATE, ocp.args.StandardRestore(abstract_state))
                meta = self._restore_meta(s)
                if data_iter is not None:
                    self._restore_data_iter(s, data_iter)
            except CheckpointError:
                raise
            except Exception as e:  # noqa: BLE001 -- any read failure means "unreadable"
                msg = (
                    f"checkpoint {os.path.join(self.directory, str(s))} is unreadable "
                    f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
                )
                if step is not None:
                    raise CheckpointError(msg) from None
                log.warning("%s; falling back to an older one", msg)
                print(f"warning: {msg}; falling back to an older checkpoint", flush=True)
                self._move_aside(s)
                continue
            return s, state, meta
        raise CheckpointError(
            f"no readable checkpoint in {self.directory} "
            f"(unreadable ones moved to {UNREADABLE_DIR}/)"
        )

    def meta(self, step: int | None = None) -> dict | None:
        """The metadata of checkpoint ``step`` (default: the newest), without the state;
        ``None`` when there is no checkpoint or it was saved without metadata."""
        steps = [step] if step is not None else self.steps()
        return self._restore_meta(steps[0]) if steps else None

    def _restore_item(self, step: int, name: str, args) -> Any:
        """Restores one item; a structure mismatch is "does not fit" only when the item's own
        metadata is on disk (without it Orbax reports a mismatch for a damaged copy too)."""
        item_dir = os.path.join(self.directory, str(step), name)
        if name == STATE and not os.path.isfile(os.path.join(item_dir, "_METADATA")):
            raise _Unreadable(f"{os.path.join(item_dir, '_METADATA')} is missing")
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{name: args}))[name]
        except ValueError as e:
            text = str(e)
            if "shape" in text.lower() or "structure" in text.lower():
                raise IncompatibleCheckpointError(
                    f"checkpoint {os.path.join(self.directory, str(step))} does not fit this "
                    f"model: {text.splitlines()[0][:300]}"
                ) from None
            raise

    def _restore_meta(self, step: int) -> dict | None:
        if not os.path.isdir(os.path.join(self.directory, str(step), META)):
            return None
        return self._restore_item(step, META, ocp.args.JsonRestore())

    def _restore_data_iter(self, step: int, data_iter: Any) -> None:
        """Restores the iterator in place; a missing or damaged state makes the whole
        checkpoint unreadable, because going on with a restarted stream would silently train
        on different batches than the uninterrupted run."""
        path = os.path.join(self.directory, str(step), DATA_ITER)
        if not os.path.isdir(path):
            raise _Unreadable(f"{path} is missing")
        saved = _saved_process_count(path)
        if saved is not None and saved != jax.process_count():
            # A deliberate change of topology, not damage: the stream cannot be continued
            # exactly on another number of processes, so it restarts, and the run says so.
            print(
                f"warning: checkpoint {step}'s data stream was saved by {saved} process(es) "
                f"and this run has {jax.process_count()}: parameters and optimizer state are "
                "restored, the data stream restarts from its beginning (an exact resume needs "
                "the same number of processes)",
                file=sys.stderr,
                flush=True,
            )
            return
        try:
            self._manager.restore(
                step,
                args=ocp.args.Composite(
                    **{DATA_ITER: grain.checkpoint.CheckpointRestore(data_iter)}
                ),
            )
        except Exception as e:  # noqa: BLE001 -- any failure: the saved stream is lost
            raise _Unreadable(
                f"data-iterator state in {path} could not be restored ({type(e).__name__})"
            ) from None

    def _move_aside(self, step: int) -> None:
        if self.read_only or jax.process_index() != 0:
            return
        src = os.path.join(self.directory, str(step))
        dst_root = os.path.join(os.path.dirname(self.directory), UNREADABLE_DIR)
        os.makedirs(dst_root, exist_ok=True)
        dst = os.path.join(dst_root, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        if os.path.exists(src):
            shutil.move(src, dst)
            print(f"moved unreadable checkpoint {src} to {dst}", flush=True)
        self._manager.close()
        self._manager = self._make_manager()
