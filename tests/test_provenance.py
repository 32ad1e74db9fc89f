"""jaxfm.provenance: what benchmarks record beside their numbers."""

import re

import jax
import jax.numpy as jnp

from jaxfm.provenance import compiled_peak_bytes, git_sha, library_versions


def test_compiled_peak_counts_arguments_and_outputs():
    x = jnp.zeros((256, 256), jnp.float32)  # 256 KiB
    compiled = jax.jit(lambda a: a @ a + 1.0).lower(x).compile()
    peak = compiled_peak_bytes(compiled)
    assert peak is not None and peak >= 2 * x.nbytes  # input + output at least
    assert peak < 16 * x.nbytes


def test_compiled_peak_is_none_without_memory_analysis():
    class NoAnalysis:
        def memory_analysis(self):
            raise NotImplementedError

    assert compiled_peak_bytes(NoAnalysis()) is None


def test_git_sha_and_versions():
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", git_sha())
    v = library_versions()
    assert v["jax"] == jax.__version__ and v["python"].count(".") == 2
