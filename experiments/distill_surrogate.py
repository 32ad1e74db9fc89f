"""Knowledge distillation of the PDE surrogate: student AViT error versus student size.

    python -m experiments.distill_surrogate smoke --workdir runs/distill-surrogate-smoke
    python -m experiments.distill_surrogate default --workdir runs/distill-surrogate
    python -m experiments.distill_surrogate default --workdir runs/distill-surrogate \\
        --distill.teacher_workdir runs/surrogate-transfer/pretrain_s0   # reuse a pretrained AViT

The teacher is a multi-physics AViT. With ``distill.teacher_workdir`` naming a finished
surrogate run (``experiments/surrogate_pretrain.py``, or a transfer study's ``pretrain_s{seed}/``)
that run is reused as it is, and the students learn on its corpus (its data config). Otherwise
the ``distill.teacher`` architecture is pretrained first in WORKDIR/teacher on ``data``
(resumed, not retrained, when it is there).

Students are smaller AViTs (``model`` with ``avit.dim``/``avit.depth`` replaced). The one in
WORKDIR is distilled: loss = alpha * MSE(student, teacher's next frame) + (1 - alpha) *
the surrogate loss on the data (:class:`jaxfm.tasks.distill.task.DistillTask`). For every size in
``distill.sweep_dims`` x ``distill.sweep_depths`` (zipped) a distilled and a data-only student
train with the same budget under WORKDIR/sweep/. Every student is scored on the held-out
windows (one-step NRMSE beside persistence, per system and as the mean over systems, on the
students' eval set: train.eval_batches' worth split equally over the systems) and by a
5-step autoregressive rollout. The
teacher is also quantized to int8 (weight-only, per output channel) and re-scored.
Writes WORKDIR/results.json and WORKDIR/report.md, and the study folder ``--results_dir``
(default WORKDIR/study): command.txt, config.json, results.json (teacher and students) and
report.md; ``--results_dir results/distill_surrogate`` refreshes the committed folder.
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
from jaxfm.config import run_cli
from jaxfm.models.surrogate import avit_config
from jaxfm.nn.quantize import dequantize, quantization_report, quantize
from jaxfm.nn.trunk import count_params
from jaxfm.provenance import command_line, write_report, write_study
from jaxfm.tasks.distill.task import DistillTask, load_teacher
from jaxfm.tasks.surrogate.pipeline import (
    PDEDataConfig,
    SurrogateExperiment,
    build_data,
    eval_windows,
    evaluate_rollouts,
    load_run_config,
    registry_meta,
    score_one_step,
    surrogate_task,
)
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from jaxfm.train import TrainConfig, load_model, run, write_results


@dataclasses.dataclass(frozen=True)
class SurrogateDistillOptions:
    """The teacher, the distillation loss and the size sweep."""

    teacher: SurrogateTaskConfig = dataclasses.field(
        default_factory=lambda: SurrogateTaskConfig(avit=avit_config("tiny"))
    )
    """Teacher architecture (used only when the teacher is trained here)."""
    teacher_steps: int = 3000
    """Teacher pretraining steps (its other training settings are the students')."""
    teacher_workdir: str = ""
    """A finished surrogate run to use as the teacher; empty: train one in WORKDIR/teacher."""
    alpha: float = 0.5
    """Weight of the MSE to the teacher's prediction; 1 - alpha weighs the data loss."""
    sweep_dims: tuple[int, ...] = ()
    """Student widths, zipped with sweep_depths; each trained distilled and data-only."""
    sweep_depths: tuple[int, ...] = ()
    """Student depths (blocks), one per width."""
    rollout: bool = True
    """Score each student by a 5-step autoregressive rollout on the held-out trajectories."""


@dataclasses.dataclass(frozen=True)
class Config(SurrogateExperiment):
    """Surrogate distillation: ``model`` is the student in WORKDIR, ``data`` the corpus."""

    distill: SurrogateDistillOptions = dataclasses.field(default_factory=SurrogateDistillOptions)
    """Teacher and distillation settings."""
    results_dir: str = ""
    """Study folder (command.txt, config.json, results.json, report.md); empty: WORKDIR/study."""


def _data_smoke() -> PDEDataConfig:
    return PDEDataConfig(n_train=3, n_eval=1, resolution=32, n_steps=10, epoch_batches=200)


def smoke() -> Config:
    """About a minute on CPU: a 1-block teacher pretrained 4 steps, one distilled student."""
    return Config(
        workdir="runs/distill-surrogate-smoke",
        model=SurrogateTaskConfig(avit=avit_config("smoke", dim=16)),
        data=_data_smoke(),
        train=TrainConfig(
            steps=20, batch_size=8, lr=1e-3, warmup_steps=2, log_every=5, eval_batches=2
        ),
        ckpt=CkptConfig(every=10),
        distill=SurrogateDistillOptions(
            teacher=SurrogateTaskConfig(avit=avit_config("smoke")), teacher_steps=4, rollout=False
        ),
    )


def default() -> Config:
    """The CPU study: the ``tiny`` AViT teacher (D 64, depth 4; the transfer study's
    pretraining), students D 16/1 block, D 32/2 and D 64/4 (the teacher's size), 600 steps
    each on the four pretraining systems at 64x64."""
    return Config(
        workdir="runs/distill-surrogate",
        model=SurrogateTaskConfig(avit=avit_config("tiny", dim=16, depth=1)),
        data=PDEDataConfig(n_train=48, n_eval=8, resolution=64, cache_dir="runs/pde_cache"),
        train=TrainConfig(
            steps=600,
            batch_size=8,
            lr=1e-3,
            warmup_steps=30,
            log_every=50,
            eval_every=0,
            eval_batches=16,
        ),
        ckpt=CkptConfig(every=300),
        distill=SurrogateDistillOptions(sweep_dims=(16, 32, 64), sweep_depths=(1, 2, 4)),
    )


PRESETS = {"smoke": smoke, "default": default}


def _teacher_run(cfg: Config) -> SurrogateExperiment:
    """The teacher's run config; trains (or resumes) the teacher when it is not given."""
    kd = cfg.distill
    if kd.teacher_workdir:
        path = os.path.join(kd.teacher_workdir, "config.json")
        if not os.path.exists(path):
            raise SystemExit(f"--distill.teacher_workdir: no finished run at {path}")
        t_cfg = load_run_config(kd.teacher_workdir)
        cache = t_cfg.data.cache_dir or os.path.join(kd.teacher_workdir, "pde_cache")
        return dataclasses.replace(t_cfg, data=dataclasses.replace(t_cfg.data, cache_dir=cache))
    t_cfg = SurrogateExperiment(
        workdir=os.path.join(cfg.workdir, "teacher"),
        train=dataclasses.replace(cfg.train, steps=kd.teacher_steps),
        parallel=cfg.parallel,
        ckpt=cfg.ckpt,
        model=kd.teacher,
        # One cache for teacher and students: WORKDIR/pde_cache unless data.cache_dir says.
        data=dataclasses.replace(
            cfg.data, cache_dir=cfg.data.cache_dir or os.path.join(cfg.workdir, "pde_cache")
        ),
    )
    # run(), not surrogate_pipeline.train(): the teacher needs no rollout plots.
    data = build_data(t_cfg.data, t_cfg.train.batch_size, t_cfg.train.seed, t_cfg.workdir)
    run(t_cfg, surrogate_task(t_cfg.model, data), data.train, data.eval)
    return t_cfg


def _first_batch(source, n: int) -> dict:
    """The first ``n`` windows of ``source`` as one batch (what the int8 report compares)."""
    examples = [source[i] for i in range(min(n, len(source)))]
    return {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}


def _by_system(scores: dict, key: str) -> dict[str, float]:
    """System -> ``key/<system>`` of :func:`score_one_step`'s output."""
    return {
        k[len(key) + 1 :]: v
        for k, v in scores.items()
        if k.startswith(key + "/") and "/" not in k[len(key) + 1 :]
    }


def _int8_teacher(task: SurrogateTask, state: nnx.State, source, batch_size: int) -> dict:
    """One-step errors of the teacher on ``source`` before and after int8 weight-only
    quantization (mean over systems, and per system)."""
    model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
    nnx.update(model, state)
    batch = _first_batch(source, batch_size)
    rep = quantization_report(model, nnx.jit(lambda m: task.predict_batch(m, batch)))
    graphdef, params = nnx.split(model)
    q_model = nnx.merge(graphdef, dequantize(quantize(params)))
    ref = score_one_step(task, model, source, batch_size)
    q = score_one_step(task, q_model, source, batch_size)
    return {
        "nrmse": ref["nrmse"],
        "int8_nrmse": q["nrmse"],
        "persistence_nrmse": ref["persistence_nrmse"],
        "nrmse_by_system": _by_system(ref, "nrmse"),
        "int8_nrmse_by_system": _by_system(q, "nrmse"),
        "windows_by_system": {k: int(v) for k, v in _by_system(ref, "windows").items()},
        **{f"int8_{k}": v for k, v in rep.items()},
    }


def _report(workdir: str, rows: list[dict], teacher: dict, cfg: Config, command: str) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    systems = sorted(teacher["nrmse_by_system"])
    lines = [
        "# Distillation of the surrogate: student error vs size",
        "",
        f"One-step errors on {teacher['windows']} held-out windows (the same for teacher and "
        "students); NRMSE = mean over systems of each system's mean.",
        f"Teacher ({teacher['workdir']}): {teacher['params']:,} parameters, one-step NRMSE "
        f"{teacher['nrmse']:.4f}; persistence {teacher['persistence_nrmse']:.4f}; per system: "
        + ", ".join(f"{k} {v:.4f}" for k, v in teacher["nrmse_by_system"].items())
        + ".",
        f"Teacher with int8 weight-only kernels ({teacher['int8_kernel_compression']:.2f}x "
        f"smaller kernels): NRMSE {teacher['int8_nrmse']:.4f}, output change rel_l2 "
        f"{teacher['int8_rel_l2']:.2e}.",
        f"Students: {cfg.train.steps} steps of batch {cfg.train.batch_size}, alpha "
        f"{cfg.distill.alpha}. Rollouts: first 5 autoregressive steps of every held-out "
        "trajectory, averaged over systems.",
        "",
        "| student | dim x depth | params | training | NRMSE 1-step | persistence | "
        "NRMSE 5-step rollout | " + " | ".join(f"NRMSE {s}" for s in systems) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(systems),
    ]
    for r in rows:
        per = [fmt(r.get("nrmse_by_system", {}).get(s)) for s in systems]
        lines.append(
            f"| {r['name']} | {r['dim']} x {r['depth']} | {r['params']:,} | {r['kind']} | "
            f"{fmt(r['nrmse'])} | {fmt(r['persistence_nrmse'])} | {fmt(r['rollout_nrmse_5'])} | "
            + " | ".join(per)
            + " |"
        )
    return write_report(workdir, lines, command)


def main(cfg: Config, command: str | None = None) -> dict:
    """Teacher (reused, resumed or trained), the distilled student, the size sweep, int8;
    writes the table to WORKDIR and the study folder."""
    command = command or command_line()
    kd = cfg.distill
    if len(kd.sweep_dims) != len(kd.sweep_depths):
        raise SystemExit(
            f"--distill.sweep_dims {kd.sweep_dims} and --distill.sweep_depths "
            f"{kd.sweep_depths} must have the same length"
        )
    workdir = os.path.abspath(cfg.workdir)
    t_cfg = _teacher_run(cfg)
    if dataclasses.replace(t_cfg.data, cache_dir=cfg.data.cache_dir) != cfg.data:
        print(f"students train on the teacher's corpus: {t_cfg.data}")
    cfg = dataclasses.replace(cfg, data=t_cfg.data)
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed, workdir)
    teacher_task = surrogate_task(t_cfg.model, data)
    teacher_state = load_teacher(t_cfg.workdir, teacher_task, t_cfg)
    meta = registry_meta(data)
    # Teacher and every student are scored on the same windows: the students' own eval set
    # (train.eval_batches' worth, split equally over the systems; all of them when 0).
    scored = eval_windows(data, cfg.train)
    print(f"one-step scoring: {scored.describe()}")

    def student(dim: int, depth: int, where: str, distilled: bool) -> dict:
        model_cfg = dataclasses.replace(
            cfg.model, avit=dataclasses.replace(cfg.model.avit, dim=dim, depth=depth)
        )
        run_cfg = dataclasses.replace(cfg, workdir=where, model=model_cfg)
        if where != workdir:  # sweep runs: plain surrogate runs (config.json loads back)
            run_cfg = SurrogateExperiment(
                **{
                    f.name: getattr(run_cfg, f.name)
                    for f in dataclasses.fields(SurrogateExperiment)
                }
            )
        s_task = surrogate_task(model_cfg, data)
        task = (
            DistillTask(
                s_task, teacher_task, teacher_state, alpha=kd.alpha, predict=s_task.predict_batch
            )
            if distilled
            else s_task
        )
        res = run(run_cfg, task, data.train, data.eval, meta=meta)
        trained = load_model(where, task, run_cfg)
        trained = trained.student if distilled else trained
        one_step = score_one_step(s_task, trained, scored, cfg.train.batch_size)
        roll = None
        if kd.rollout:
            out = evaluate_rollouts(run_cfg, task=s_task, data=data, model=trained, max_steps=5)
            roll = float(np.mean([r["model"]["nrmse"]["mean_5"] for r in out.values()]))
        abstract = nnx.eval_shape(lambda: s_task.build_model(nnx.Rngs(0)))
        return {
            "name": os.path.relpath(where, workdir) if where != workdir else ".",
            "dim": dim,
            "depth": depth,
            "params": count_params(abstract),
            "kind": "distilled" if distilled else "data only",
            "nrmse": one_step["nrmse"],
            "persistence_nrmse": one_step["persistence_nrmse"],
            "nrmse_by_system": _by_system(one_step, "nrmse"),
            "rollout_nrmse_5": roll,
            "run_eval_nrmse": res.get("eval/nrmse"),
        }

    own = (cfg.model.avit.dim, cfg.model.avit.depth)
    rows = [student(*own, workdir, True)]
    for dim, depth in zip(kd.sweep_dims, kd.sweep_depths):
        for distilled in (True, False):
            if distilled and (dim, depth) == own:
                continue  # WORKDIR's student is this row
            tag = f"d{dim}x{depth}-{'distill' if distilled else 'data'}"
            rows.append(student(dim, depth, os.path.join(workdir, "sweep", tag), distilled))
    rows.sort(key=lambda r: (r["params"], r["kind"]))

    abstract = nnx.eval_shape(lambda: teacher_task.build_model(nnx.Rngs(0)))
    teacher = {
        "workdir": t_cfg.workdir,
        "params": count_params(abstract),
        "n_windows": len(scored),
        "windows": scored.describe(),
        **_int8_teacher(teacher_task, teacher_state, scored, cfg.train.batch_size),
    }
    report = _report(workdir, rows, teacher, cfg, command)
    text = open(report).read()
    print(text)
    results = write_results(workdir, {"teacher": teacher, "students": rows, "report": report})
    if jax.process_index() == 0:
        write_study(
            cfg.results_dir or os.path.join(workdir, "study"),
            command=command,
            config=cfg,
            results={"teacher": teacher, "students": rows},
            report=text,
        )
    return results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
