"""Tiny Lorenz-63 regression setups shared by the engine tests."""

import dataclasses

import pytest

from jaxfm.config import ExperimentConfig, override
from jaxfm.data.lorenz import flow_map_splits
from jaxfm.data.sources import ArraySource
from jaxfm.models.regressor import RegressorConfig
from jaxfm.tasks.regression.task import RegressionTask


@dataclasses.dataclass(frozen=True)
class TinyConfig(ExperimentConfig):
    """Engine-test experiment."""

    model: RegressorConfig = dataclasses.field(
        default_factory=lambda: RegressorConfig(hidden=64, depth=2)
    )
    """Regressor."""


@pytest.fixture(scope="session")
def lorenz():
    train, held_out, _ = flow_map_splits(8, 2, 32, seed=0)
    return ArraySource(train, "lorenz-train"), ArraySource(held_out, "lorenz-eval")


@pytest.fixture
def make_cfg(tmp_path):
    def make(workdir="run", **overrides):
        base = {
            "workdir": str(tmp_path / workdir),
            "train.steps": "6",
            "train.batch_size": "32",
            "train.lr": "3e-3",
            "train.warmup_steps": "2",
            "train.log_every": "1",
            "train.progress": "false",
            "ckpt.every": "0",
            "ckpt.async_save": "false",
        }
        base.update({k: str(v) for k, v in overrides.items()})
        return override(TinyConfig(), base)

    return make


@pytest.fixture
def task():
    return RegressionTask(RegressorConfig(hidden=64, depth=2))
