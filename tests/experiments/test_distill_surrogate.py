"""experiments.distill_surrogate: bad options fail fast, with the offending value named
(the smoke preset's training, saving and resuming is in tests/test_experiments.py)."""

import os

import pytest

from experiments import distill_surrogate as ds
from jaxfm.config import override


def test_sweep_dims_and_depths_must_pair_up(tmp_path):
    cfg = override(
        ds.smoke(),
        {
            "workdir": str(tmp_path / "s"),
            "distill.sweep_dims": "16,32",
            "distill.sweep_depths": "1",
        },
    )
    with pytest.raises(SystemExit, match=r"sweep_dims \(16, 32\).*same length"):
        ds.main(cfg)
    assert not os.path.exists(tmp_path / "s")  # nothing trained or written


def test_missing_teacher_workdir_is_named(tmp_path):
    cfg = override(
        ds.smoke(),
        {"workdir": str(tmp_path / "s"), "distill.teacher_workdir": str(tmp_path / "nope")},
    )
    with pytest.raises(SystemExit, match="no finished run at .*nope"):
        ds.main(cfg)
