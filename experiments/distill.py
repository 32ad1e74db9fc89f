"""Knowledge distillation on the Lorenz-63 flow map: student error versus student size.

    python -m experiments.distill smoke --workdir runs/distill-smoke
    python -m experiments.distill default --workdir runs/distill

A teacher regressor (``distill.teacher``) is trained first (in ``distill.teacher_workdir``,
default WORKDIR/teacher; an existing run there is resumed, not retrained), then the student
``model`` is distilled from it in WORKDIR (loss alpha * MSE to the teacher + (1 - alpha) * MSE
to the data, :class:`jaxfm.tasks.distill.task.DistillTask`). For every hidden width in
``distill.sweep`` a distilled and a data-only student are trained with the same budget under
WORKDIR/sweep/. results.json and report.md hold the table: held-out MSE of each student
against the teacher's and the persistence baseline's, with parameter counts. The study folder
``--results_dir`` (default WORKDIR/study) gets command.txt, config.json, results.json (the
student run's results with the teacher and every student) and report.md;
``--results_dir results/distill`` refreshes the committed folder.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxfm
from jaxfm.ckpt import CkptConfig
from jaxfm.config import ExperimentConfig, run_cli
from jaxfm.data.lorenz import LorenzConfig, flow_map_splits
from jaxfm.data.sources import ArraySource
from jaxfm.models.regressor import RegressorConfig
from jaxfm.nn.quantize import dequantize, quantization_report, quantize
from jaxfm.provenance import command_line, write_report, write_study
from jaxfm.tasks.distill.task import DistillTask, load_teacher
from jaxfm.tasks.regression.task import RegressionTask
from jaxfm.train import TrainConfig, run, write_results


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """The teacher and the distillation."""

    teacher: RegressorConfig = dataclasses.field(
        default_factory=lambda: RegressorConfig(hidden=128, depth=3)
    )
    """Teacher architecture."""
    teacher_steps: int = 2000
    """Teacher training steps (its other training settings are the student's)."""
    teacher_workdir: str = ""
    """Teacher run directory; empty means WORKDIR/teacher."""
    alpha: float = 0.5
    """Weight of the MSE to the teacher; 1 - alpha weighs the MSE to the data."""
    sweep: tuple[int, ...] = ()
    """Student hidden widths to train both distilled and data-only under WORKDIR/sweep/."""


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """Distillation experiment."""

    model: RegressorConfig = dataclasses.field(
        default_factory=lambda: RegressorConfig(hidden=16, depth=1)
    )
    """The student."""
    data: LorenzConfig = dataclasses.field(default_factory=LorenzConfig)
    """The dataset."""
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    """Teacher and distillation settings."""
    results_dir: str = ""
    """Study folder (command.txt, config.json, results.json, report.md); empty: WORKDIR/study."""


def default() -> Config:
    """A few minutes on 2 CPU cores: a 128x3 teacher, students of width 4 to 64."""
    return Config(
        workdir="runs/distill",
        model=RegressorConfig(hidden=16, depth=1),
        train=TrainConfig(
            steps=1000, batch_size=128, lr=3e-3, warmup_steps=50, log_every=100, eval_every=500
        ),
        ckpt=CkptConfig(every=500),
        distill=DistillConfig(sweep=(4, 16, 64)),
    )


def smoke() -> Config:
    """Seconds on CPU: tiny teacher and student, no sweep."""
    return Config(
        workdir="runs/distill-smoke",
        model=RegressorConfig(hidden=8, depth=1),
        data=LorenzConfig(n_train=8, n_eval=2, n_steps=32),
        train=TrainConfig(
            steps=20, batch_size=32, lr=3e-3, warmup_steps=2, log_every=5, eval_every=10
        ),
        ckpt=CkptConfig(every=10),
        distill=DistillConfig(teacher=RegressorConfig(hidden=16, depth=1), teacher_steps=20),
    )


PRESETS = {"default": default, "smoke": smoke}


def _n_params(m: RegressorConfig) -> int:
    dims = [m.features] + [m.hidden] * m.depth + [m.features]
    return sum(a * b + b for a, b in zip(dims, dims[1:]))


def _int8(task: RegressionTask, state: nnx.State, held_out: dict) -> dict:
    """The teacher quantized to int8 (weight-only): output change and held-out MSE."""
    model = task.build_model(nnx.Rngs(0))
    nnx.update(model, state)
    x, y = jnp.asarray(held_out["x"]), np.asarray(held_out["y"], np.float64)
    rep = quantization_report(model, lambda m: m(x))
    graphdef, params = nnx.split(model)
    y_q = np.asarray(nnx.merge(graphdef, dequantize(quantize(params)))(x), np.float64)
    return {
        "int8_eval_mse": float(np.mean((y_q - y) ** 2)),
        **{f"int8_{k}": v for k, v in rep.items()},
    }


def _report(workdir: str, rows: list[dict], teacher: dict, command: str) -> str:
    lines = [
        "# Distillation: student error vs size (Lorenz-63 flow map)",
        "",
        f"Teacher: {teacher['params']} parameters, held-out MSE "
        f"{teacher['eval_mse']:.3e}; persistence MSE {teacher['persistence_mse']:.3e}.",
        f"Teacher with int8 weight-only kernels ({teacher['int8_kernel_compression']:.2f}x "
        f"smaller): held-out MSE {teacher['int8_eval_mse']:.3e}, output change rel_l2 "
        f"{teacher['int8_rel_l2']:.2e}, max_abs {teacher['int8_max_abs']:.2e}.",
        "",
        "| student | hidden x depth | params | training | held-out MSE |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['hidden']} x {r['depth']} | {r['params']} | "
            f"{r['kind']} | {r['eval_mse']:.3e} |"
        )
    return write_report(workdir, lines, command)


def main(cfg: Config, command: str | None = None) -> dict:
    """Trains the teacher (or resumes it), the distilled student and the sweep; writes the
    table to WORKDIR and the study folder."""
    command = command or command_line()
    d, kd = cfg.data, cfg.distill
    train, held_out, stats = flow_map_splits(
        d.n_train, d.n_eval, d.n_steps, dt=d.dt, seed=cfg.train.seed
    )
    src, ev = ArraySource(train, "lorenz-train"), ArraySource(held_out, "lorenz-eval")
    meta = {"normalisation": stats}
    workdir = os.path.abspath(cfg.workdir)

    teacher_cfg = dataclasses.replace(
        cfg,
        model=kd.teacher,
        workdir=kd.teacher_workdir or os.path.join(workdir, "teacher"),
        train=dataclasses.replace(cfg.train, steps=kd.teacher_steps),
    )
    teacher_task = RegressionTask(kd.teacher)
    t_res = run(teacher_cfg, teacher_task, src, ev, meta=meta)
    teacher_state = load_teacher(teacher_cfg.workdir, teacher_task, teacher_cfg)

    def student(model: RegressorConfig, where: str, distilled: bool) -> dict:
        c = dataclasses.replace(cfg, model=model, workdir=where)
        task = (
            DistillTask(RegressionTask(model), teacher_task, teacher_state, alpha=kd.alpha)
            if distilled
            else RegressionTask(model)
        )
        res = run(c, task, src, ev, meta=meta)
        return {
            "name": os.path.relpath(where, workdir) if where != workdir else ".",
            "hidden": model.hidden,
            "depth": model.depth,
            "params": _n_params(model),
            "kind": "distilled" if distilled else "data only",
            "eval_mse": res.get("eval/mse", float("nan")),
        }

    rows = [student(cfg.model, workdir, True)]
    for h in kd.sweep:
        m = dataclasses.replace(cfg.model, hidden=h)
        for distilled in (True, False):
            tag = "distill" if distilled else "scratch"
            rows.append(student(m, os.path.join(workdir, "sweep", f"h{h}-{tag}"), distilled))
    teacher = {
        "params": _n_params(kd.teacher),
        "eval_mse": t_res.get("eval/mse", float("nan")),
        "persistence_mse": t_res.get("eval/persistence_mse", float("nan")),
        **_int8(teacher_task, teacher_state, held_out),
    }
    report = _report(workdir, rows, teacher, command)
    text = open(report).read()
    print(text)
    results = write_results(workdir, {"teacher": teacher, "students": rows, "report": report})
    study = {k: v for k, v in results.items() if k != "report"} | {"command": command}
    if jax.process_index() == 0:
        where = cfg.results_dir or os.path.join(workdir, "study")
        write_study(where, command=command, config=cfg, results=study, report=text)
    return results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
