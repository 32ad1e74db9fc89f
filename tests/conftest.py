"""Test-wide settings, applied before JAX starts.

* 8 simulated CPU devices, so sharding (dp, fsdp, expert) is exercised on any machine.
* Silent rank promotion (broadcasting (n,) against (n, 1)) raises, as in equinox's suite:
  that class of bug otherwise passes every shape check.
* Tests marked `gpu` are skipped with a reason where jax has no GPU backend.
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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, saying why, where the default backend is not a GPU."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items or jax.default_backend() == "gpu":
        return
    import pytest

    skip = pytest.mark.skip(
        reason=f"needs a CUDA GPU (jax backend is {jax.default_backend()!r}; "
        "run `make test-gpu` on a GPU machine)"
    )
    for item in gpu_items:
        item.add_marker(skip)
