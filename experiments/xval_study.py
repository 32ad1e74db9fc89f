"""xVal vs digit encodings (P10, P1000, FP15) on synthetic numeric tasks, same model and budget.

    python -m experiments.xval_study smoke --workdir runs/xval-smoke
    python -m experiments.xval_study study --workdir runs/xval-study

One causal transformer (``jaxfm.models.xval``) per (task, encoding) in ``study.tasks`` x
``study.encodings``, all trained side by side in one Foundation engine run
(``SideBySideTask``): every model sees the same samples in the same order, each in its own
encoding, with the same steps, batch, learning-rate schedule and seed. Afterwards the answer of
every held-out sample is *generated* (greedy; for xVal the token head must emit [NUM] and the
number head gives its value) on an in-distribution split and on an out-of-distribution split
(a held-out band of operand / semi-major-axis values that never occurs in training).

The study itself is ``jaxfm.tasks.xval.study``. Writes to WORKDIR: command.txt, config.json,
metrics.jsonl (per-model metrics as ``TASK-ENCODING/ce``), checkpoints/, results.json (the
table's rows), report.md (the table), pred_vs_true.png. Errors
are in normalised units (each field divided by its power-of-two scale, |x| <= 5 on the
training split); "within 1%" is scale-free; a sample whose generated tokens do not form a
number counts as a miss (and as 0 in the MSE).
"""

from __future__ import annotations

import jaxfm
from jaxfm.config import run_cli
from jaxfm.provenance import command_line
from jaxfm.tasks.xval.study import Config, run_study, smoke, study

PRESETS = {"smoke": smoke, "study": study}


def main(cfg: Config, command: str | None = None) -> dict:
    """Trains every (task, encoding) side by side, then writes the table, plot and results."""
    return run_study(cfg, command or command_line())


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
