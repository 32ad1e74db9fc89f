"""jaxfm.train: the training engine (state, steps, loop, optimizer, metrics writer)."""

from jaxfm.train.loop import (
    ConfigMismatchError,
    NonFiniteError,
    Preempted,
    evaluate,
    load_model,
    load_state,
    run,
    write_results,
)
from jaxfm.train.optim import make_optimizer, make_schedule
from jaxfm.train.options import TrainConfig
from jaxfm.train.step import Engine
from jaxfm.train.task import Task

__all__ = [
    "ConfigMismatchError",
    "Engine",
    "NonFiniteError",
    "Preempted",
    "Task",
    "TrainConfig",
    "evaluate",
    "load_model",
    "load_state",
    "make_optimizer",
    "make_schedule",
    "run",
    "write_results",
]
