"""jaxfm: JAX/Flax foundation models for scientific data.

Floors (each imports only the floors below it): ``tasks`` > ``train`` > ``ckpt`` > ``data`` >
``models`` > ``nn`` > ``parallel``, with the light option modules (``jaxfm.config`` and each
package's ``options``) importable from anywhere; ``kernels`` (top level) depends on jax alone.
``tests/test_imports.py`` checks it.

Importing jaxfm changes no global state. Two settings are the caller's to make:

* :func:`configure_cpu`, before JAX starts its backend, in scripts and tests that run sharded
  steps on (simulated) CPU devices;
* Flax's eager sharding stays as the user has it: parameters carry *logical* axis names in
  their ``out_sharding`` metadata, which ``jaxfm.parallel`` maps to mesh axes, and each such
  parameter is created with ``eager_sharding=False`` so that models can be built, inspected
  and abstractly initialised without a mesh.
"""

from __future__ import annotations

import os
import sys
import warnings

__version__ = "0.1.0"

#: XLA's CPU runtime (jax 0.12.0.1) deadlocked in the in-process all-gather rendezvous of
#: sharded train steps on simulated multi-device CPUs ("Expected 8 threads to join the
#: rendezvous", then abort) while its concurrency-optimised scheduler was on.
CPU_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)


def configure_cpu(devices: int | None = None) -> None:
    """Adds jaxfm's XLA CPU flags (and ``devices`` simulated CPU devices) to ``XLA_FLAGS``.

    XLA reads ``XLA_FLAGS`` once, when the backend starts, so call this first thing in a
    script (experiment scripts and the test suite do). A flag already present in
    ``XLA_FLAGS`` wins; the flags only concern the CPU backend. Called after the backend has
    started it changes nothing and warns.
    """
    flags = os.environ.get("XLA_FLAGS", "").split()
    wanted = list(CPU_FLAGS)
    if devices is not None:
        wanted.append(f"--xla_force_host_platform_device_count={int(devices)}")
    added = [f for f in wanted if not any(g.split("=")[0] == f.split("=")[0] for g in flags)]
    if not added:
        return
    if _backend_started():
        warnings.warn(
            f"jaxfm.configure_cpu: the JAX backend already started, {' '.join(added)} not applied",
            stacklevel=2,
        )
        return
    os.environ["XLA_FLAGS"] = " ".join(flags + added)


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()
