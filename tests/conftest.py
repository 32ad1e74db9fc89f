"""Test-wide settings, applied before JAX starts.

* 8 simulated CPU devices, so sharding (dp, fsdp, expert) is exercised on any machine.
* Silent rank promotion (broadcasting (n,) against (n, 1)) raises, as in equinox's suite:
  that class of bug otherwise passes every shape check.
* No persistent compilation cache: with it, executables with cross-device collectives
  reloaded from the cache deadlocked on the 8-device CPU platform (jax 0.12.0.1: devices
  waiting in different all-gathers, "Expected 8 threads to join the rendezvous", abort).
"""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jaxfm  # noqa: E402, F401  (sets the XLA CPU flag it needs before the backend starts)
import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
