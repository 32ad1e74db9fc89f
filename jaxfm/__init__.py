"""jaxfm: JAX/Flax foundation models for scientific data.

Floors (each imports only the floors below it): ``train`` > ``ckpt`` > ``data`` > ``models`` >
``nn`` > ``parallel``; ``kernels`` (top level) depends on jax alone. See README.md.

Parameters carry *logical* axis names in their ``out_sharding`` metadata, which
``jaxfm.parallel`` maps to mesh axes with one rule table per strategy. Flax's eager sharding
(which would demand a mesh whenever such a parameter is created) is switched off here, once,
so models can be built, inspected and abstractly initialised anywhere.
"""

import os as _os

# XLA's CPU runtime (jax 0.12.0.1) deadlocked in the in-process all-gather rendezvous of
# sharded train steps on simulated multi-device CPUs ("Expected 8 threads to join the
# rendezvous", then abort) while its concurrency-optimised scheduler was on. XLA reads
# XLA_FLAGS when the backend starts, so setting it at import, before any computation, covers
# scripts, notebooks and tests. The flag only concerns the CPU backend; an explicit setting
# in XLA_FLAGS wins.
if "xla_cpu_enable_concurrency_optimized_scheduler" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()

from flax import nnx as _nnx  # noqa: E402

if hasattr(_nnx, "use_eager_sharding"):
    _nnx.use_eager_sharding(False)

__version__ = "0.1.0"
