"""Multi-host initialisation: one call, right at start-up, before any JAX computation.

``jax.distributed.initialize`` must run before the first ``jax.devices()``; called later it
silently leaves a single-process setup (jax#12258). :func:`initialize` decides from the
environment whether this process is one of many:

* explicit: ``JAX_COORDINATOR_ADDRESS`` (host:port), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``
  (and optionally ``JAX_LOCAL_DEVICE_IDS``, comma-separated);
* SLURM: ``SLURM_JOB_ID`` with ``SLURM_NTASKS`` > 1 (one task per GPU, every task seeing its
  node's GPUs; jax's own SLURM detection fills in the rest);
* Kubernetes / JobSet: ``KUBERNETES_SERVICE_HOST`` plus jax's cluster detection.

With none of these it does nothing, so the same script runs on a laptop. Grain worker
processes must not call it again (google/grain#802): it returns early in a child process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os

import jax

log = logging.getLogger(__name__)


def _explicit_env() -> dict | None:
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not addr:
        return None
    try:
        kwargs = dict(
            coordinator_address=addr,
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    except KeyError as e:
        raise RuntimeError(f"JAX_COORDINATOR_ADDRESS is set but {e.args[0]} is not") from None
    ids = os.environ.get("JAX_LOCAL_DEVICE_IDS")
    if ids:
        kwargs["local_device_ids"] = [int(i) for i in ids.split(",")]
    return kwargs


def detect() -> str | None:
    """Which launcher started this process: "explicit", "slurm", "kubernetes" or None."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return "explicit"
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("JOB_COMPLETION_INDEX"):
        return "kubernetes"
    return None


def is_initialized() -> bool:
    """Whether jax.distributed has been initialised in this process."""
    fn = getattr(jax.distributed, "is_initialized", None)
    if fn is not None:
        return bool(fn())
    from jax._src import distributed as _d  # jax < 0.5 fallback

    return _d.global_state.client is not None


def initialize(mode: str = "auto") -> bool:
    """Initialises jax.distributed when the environment says so; returns True if it did.

    Args:
      mode: "auto" (detect from the environment) or "off" (never initialise).
    """
    if mode == "off" or multiprocessing.parent_process() is not None or is_initialized():
        return False
    kind = detect()
    if kind is None:
        return False
    if kind == "explicit":
        jax.distributed.initialize(**_explicit_env())
    else:
        jax.distributed.initialize()
    log.info(
        "jax.distributed initialised (%s): process %d of %d, %d local devices",
        kind,
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
    )
    return True
