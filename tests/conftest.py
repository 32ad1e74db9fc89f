"""Test-wide settings, applied before JAX starts.

* 8 simulated CPU devices, so sharding (dp, fsdp, expert) is exercised on any machine.
* Silent rank promotion (broadcasting (n,) against (n, 1)) raises, as in equinox's suite:
  that class of bug otherwise passes every shape check.
* A persistent compilation cache under .jax_cache: many tests compile the same programs.
"""

import os

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
