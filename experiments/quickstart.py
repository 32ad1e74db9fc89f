"""Quickstart: learn the Lorenz-63 flow map with a residual MLP (the engine end to end).

    python -m experiments.quickstart smoke --workdir runs/quickstart
    python -m experiments.quickstart default --train.steps 3000 --parallel.strategy fsdp

The config and presets live in ``jaxfm.tasks.regression.quickstart``.
Writes config.json, metrics.jsonl, checkpoints/, results.json and metrics.png (loss,
eval/mse and eval/persistence_mse against step) to the workdir.
The result to read: eval/mse against eval/persistence_mse (predicting "no change").
"""

from __future__ import annotations

import jaxfm
from jaxfm.config import run_cli
from jaxfm.tasks.regression.quickstart import Config, default, run_quickstart, smoke

PRESETS = {"default": default, "smoke": smoke}


def main(cfg: Config) -> dict:
    """Trains, evaluates and plots; returns the results dict."""
    return run_quickstart(cfg)


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
