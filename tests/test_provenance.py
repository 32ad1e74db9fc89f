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


def test_write_study_writes_the_four_files(tmp_path):
    import dataclasses
    import json
    import os

    import numpy as np

    from jaxfm.provenance import STUDY_FILES, command_line, write_study

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        workdir: str = "runs/x"
        sizes: tuple[int, ...] = (1, 2)

    cmd = command_line(["/repo/experiments/x.py", "smoke", "--workdir", "runs/a b"])
    assert cmd.endswith("smoke --workdir 'runs/a b'")
    write_study(
        str(tmp_path), command=cmd, config=Cfg(), results={"v": np.float32(0.5)}, report="# r"
    )
    assert sorted(os.listdir(tmp_path)) == sorted(STUDY_FILES)
    assert json.load(open(tmp_path / "config.json")) == {"workdir": "runs/x", "sizes": [1, 2]}
    assert json.load(open(tmp_path / "results.json")) == {"v": 0.5}
    assert open(tmp_path / "command.txt").read() == cmd + "\n"
