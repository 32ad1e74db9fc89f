"""Test-wide settings, applied before JAX starts.

* 8 simulated CPU devices, so sharding (dp, fsdp, expert) is exercised on any machine.
* Silent rank promotion (broadcasting (n,) against (n, 1)) raises, as in equinox's suite:
  that class of bug otherwise passes every shape check.
* :func:`jaxfm.configure_cpu` turns off XLA's concurrency-optimised CPU scheduler, under
  which sharded steps deadlocked on the 8 simulated devices (jax 0.12.0.1, "Expected 8
  threads to join the rendezvous", abort). The persistent compilation cache stays off: the
  deadlock was first seen with it on, and a red CI costs more than the compile time saved.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jaxfm  # noqa: E402

jaxfm.configure_cpu(devices=8)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
