"""jaxfm.train: the training engine (state, steps, loop, optimizer, metrics writer, plots).

The engine knows no model family: a :class:`~jaxfm.train.task.Task` (see :mod:`jaxfm.tasks`)
says how a batch becomes a loss. Names load on first use (:mod:`jaxfm._lazy`).
"""

from jaxfm._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ConfigMismatchError": "jaxfm.train.loop",
        "NonFiniteError": "jaxfm.train.loop",
        "Preempted": "jaxfm.train.loop",
        "collect_examples": "jaxfm.train.loop",
        "evaluate": "jaxfm.train.loop",
        "load_model": "jaxfm.train.loop",
        "load_state": "jaxfm.train.loop",
        "run": "jaxfm.train.loop",
        "write_results": "jaxfm.train.loop",
        "WorkdirLock": "jaxfm.train.lock",
        "WorkdirLockedError": "jaxfm.train.lock",
        "make_optimizer": "jaxfm.train.optim",
        "make_schedule": "jaxfm.train.optim",
        "TrainConfig": "jaxfm.train.options",
        "Engine": "jaxfm.train.step",
        "Task": "jaxfm.train.task",
    },
)
