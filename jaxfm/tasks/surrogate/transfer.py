"""The transfer study: pretrain, then fine-tune and train controls on unseen targets.

Each training seed pretrains its own model (``ROOT/pretrain_s{seed}``, the pretraining
preset with ``train.seed = seed``; the simulated data are the same for every seed), and the
``pretrained`` arm of seed ``s`` fine-tunes from ``pretrain_s{s}``: the spread over seeds then
includes the pretraining's own randomness, not only the fine-tuning's. Studies written
before this pretrained once (``ROOT/pretrain``, every seed fine-tuning from it);
``StudyOptions.pretrain_per_seed = False`` keeps that layout, and :func:`rewrite_report`
reads it for a study whose config.json predates the option.

Every run resumes from its own workdir's checkpoints, so rerunning a study trains only what
is missing (a finished run is evaluated again and its results.json rewritten).

Used by ``experiments.surrogate_transfer``; the pretraining and fine-tuning runs take their
settings from ``jaxfm.tasks.surrogate.presets``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from jaxfm.config import override
from jaxfm.tasks.surrogate.pipeline import FINETUNE_SYSTEMS, SurrogateExperiment
from jaxfm.tasks.surrogate.presets import FINETUNE_PRESETS, PRETRAIN_PRESETS, finetune, pretrain

ARMS = ("pretrained", "scratch", "fno", "unet")


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """The grid of fine-tuning runs."""

    pretrain_preset: str = "tiny"
    """Pretraining preset (smoke, tiny, Ti: jaxfm.tasks.surrogate.presets.PRETRAIN_PRESETS)."""
    finetune_preset: str = "m1"
    """Fine-tuning preset (smoke, m1, m01: FINETUNE_PRESETS; data.systems becomes targets)."""
    targets: tuple[str, ...] = FINETUNE_SYSTEMS
    """Unseen target systems (default: every held-out system)."""
    n_trains: tuple[int, ...] = (4, 16)
    """Training trajectories of the target."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (init and data order; the simulated data are fixed)."""
    pretrain_per_seed: bool = True
    """Pretrain once per seed (ROOT/pretrain_s{seed}, train.seed = seed) and fine-tune seed s
    from pretrain_s{s}; false: pretrain once (ROOT/pretrain) and fine-tune every seed from
    it, the layout of studies run before this option."""
    arms: tuple[str, ...] = ARMS
    """pretrained (AViT from its seed's pretraining run), scratch (same AViT), fno, unet."""
    pretrain_steps: int = 0
    """Override the pretraining preset's steps (0: keep)."""
    finetune_steps: int = 0
    """Override the fine-tuning preset's steps (0: keep)."""
    cache_dir: str = ""
    """Simulated-data cache shared by every run (empty: WORKDIR/pde_cache)."""
    overrides: tuple[str, ...] = ()
    """Config overrides of the pretraining and of every fine-tuning run, key=value as on the
    command line (e.g. model.avit.patch_jitter=true): how an ablation varies one lever."""
    pretrain_overrides: tuple[str, ...] = ()
    """Overrides of the pretraining only, after ``overrides`` (e.g. data.time_strides=1,2)."""


def parse_overrides(items: tuple[str, ...]) -> dict[str, str]:
    """``("a.b=1", ...)`` -> ``{"a.b": "1"}``; an item without ``=`` is a one-line error."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"study.overrides: {bad[0]!r} is not key=value")
    return dict(item.split("=", 1) for item in items)


def _with(cfg: SurrogateExperiment, workdir: str, steps: int, cache: str, **kw):
    train = dataclasses.replace(cfg.train, steps=steps) if steps else cfg.train
    data = dataclasses.replace(cfg.data, cache_dir=cache, **kw.pop("data", {}))
    return dataclasses.replace(cfg, workdir=workdir, train=train, data=data, **kw)


PRETRAIN_DIR = "pretrain"
"""The single pretraining run of a study with ``pretrain_per_seed = False``."""


def pretrain_dirs(root: str, s: StudyOptions) -> dict[int, str]:
    """Training seed -> the pretraining run its ``pretrained`` arm fine-tunes from."""
    if not s.pretrain_per_seed:
        return {seed: os.path.join(root, PRETRAIN_DIR) for seed in s.seeds}
    return {seed: os.path.join(root, f"{PRETRAIN_DIR}_s{seed}") for seed in s.seeds}


def _check_layout(root: str, s: StudyOptions) -> None:
    """Refuses to resume a study in the other pretraining layout: its fine-tuning runs
    resume from their own checkpoints, which started from the other pretraining, so the
    report would describe runs that were not made."""
    single = os.path.isdir(os.path.join(root, PRETRAIN_DIR))
    per_seed = any(
        os.path.isdir(os.path.join(root, d)) and d.startswith(f"{PRETRAIN_DIR}_s")
        for d in (os.listdir(root) if os.path.isdir(root) else ())
    )
    if s.pretrain_per_seed and single:
        raise ValueError(
            f"{os.path.join(root, PRETRAIN_DIR)}: this study pretrained once; resume it with "
            "--study.pretrain_per_seed false, or use a new --workdir"
        )
    if not s.pretrain_per_seed and per_seed:
        raise ValueError(
            f"{root}: this study pretrained once per seed ({PRETRAIN_DIR}_s*); resume it with "
            "--study.pretrain_per_seed true, or use a new --workdir"
        )


def _pretrain_config(s: StudyOptions, workdir: str, seed: int | None) -> SurrogateExperiment:
    """The pretraining run at ``workdir``: the preset, the study's overrides, then ``seed``
    (None: the preset's own)."""
    updates = {**parse_overrides(s.overrides), **parse_overrides(s.pretrain_overrides)}
    cfg = _with(
        override(PRETRAIN_PRESETS[s.pretrain_preset](), updates),
        workdir,
        s.pretrain_steps,
        s.cache_dir,
    )
    if seed is None:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def run_study(root: str, s: StudyOptions) -> tuple[list[dict], float]:
    """Runs (or resumes) the pretraining and every arm of the grid under ``root``; returns
    the runs and wall time."""
    for name, presets in (("pretrain", PRETRAIN_PRESETS), ("finetune", FINETUNE_PRESETS)):
        if getattr(s, f"{name}_preset") not in presets:
            raise SystemExit(f"study.{name}_preset: choose one of {', '.join(presets)}")
    if not s.cache_dir:
        s = dataclasses.replace(s, cache_dir=os.path.join(root, "pde_cache"))
    t0 = time.time()
    updates = parse_overrides(s.overrides)
    _check_layout(root, s)
    init_dirs = pretrain_dirs(root, s)
    pre_cfgs = {
        seed: _pretrain_config(s, workdir, seed if s.pretrain_per_seed else None)
        for seed, workdir in init_dirs.items()
    }
    for cfg in {c.workdir: c for c in pre_cfgs.values()}.values():  # once per directory
        pretrain(cfg)
    runs = []
    for target in s.targets:
        for n in s.n_trains:
            for seed in s.seeds:
                for arm in s.arms:
                    base = override(FINETUNE_PRESETS[s.finetune_preset](), updates)
                    model = dataclasses.replace(
                        base.model, arch="avit" if arm in ("pretrained", "scratch") else arm
                    )
                    ft = _with(
                        base,
                        os.path.join(root, f"{target}_n{n}_{arm}_s{seed}"),
                        s.finetune_steps,
                        s.cache_dir,
                        model=model,
                        init_from=init_dirs[seed] if arm == "pretrained" else None,
                        data={"systems": (target,), "n_train": n},
                    )
                    ft = dataclasses.replace(ft, train=dataclasses.replace(ft.train, seed=seed))
                    res = finetune(ft)
                    roll = res["rollout"][target]
                    runs.append(
                        {
                            "target": target,
                            "n_train": n,
                            "seed": seed,
                            "arm": arm,
                            "eval_windows": int(res[f"eval/windows/{target}"]),
                            "nrmse_1_fields": _per_field(res, "nrmse", target),
                            "nrmse_1": res[f"eval/nrmse/{target}"],
                            "vrmse_1": res[f"eval/vrmse/{target}"],
                            "nrmse_5": roll["model"]["nrmse"]["mean_5"],
                            "persist_nrmse_1": res[f"eval/persistence_nrmse/{target}"],
                            "persist_vrmse_1": res[f"eval/persistence_vrmse/{target}"],
                            "persist_nrmse_5": roll["persistence"]["nrmse"]["mean_5"],
                            "nrmse_roll1": roll["model"]["nrmse"]["per_step"][0],
                            "persist_nrmse_roll1": roll["persistence"]["nrmse"]["per_step"][0],
                            "nrmse_last": roll["model"]["nrmse"]["per_step"][-1],
                            "persist_nrmse_last": roll["persistence"]["nrmse"]["per_step"][-1],
                            "rollout_steps": int(roll["steps"]),
                        }
                    )
    return runs, time.time() - t0


def _per_field(res: dict, metric: str, system: str) -> dict[str, float]:
    """Field -> one-step ``metric`` of ``system`` (a run's ``eval/<metric>/<system>/<field>``)."""
    prefix = f"eval/{metric}/{system}/"
    return {k[len(prefix) :]: v for k, v in res.items() if k.startswith(prefix)}


def _mean_se(xs) -> tuple[float, float]:
    xs = np.asarray(xs, np.float64)
    se = xs.std(ddof=1) / np.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return float(xs.mean()), float(se)


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard error over seeds of every (target, n_train, arm), plus persistence."""
    rows = []
    keys = sorted({(r["target"], r["n_train"]) for r in runs})
    for target, n in keys:
        group = [r for r in runs if (r["target"], r["n_train"]) == (target, n)]
        arms = [a for a in ARMS if any(r["arm"] == a for r in group)]
        for arm in arms + ["persistence"]:
            sel = group if arm == "persistence" else [r for r in group if r["arm"] == arm]
            pre = "persist_" if arm == "persistence" else ""
            row = {"target": target, "n_train": n, "arm": arm, "n_seeds": len(sel)}
            row["eval_windows"] = sorted({r.get("eval_windows") for r in sel}, key=str)
            for m in ("nrmse_1", "vrmse_1", "nrmse_roll1", "nrmse_5", "nrmse_last"):
                if all(pre + m in r for r in sel):  # runs recorded before a metric lack it
                    row[m] = _mean_se([r[pre + m] for r in sel])
            rows.append(row)
    return rows


METRICS = ("nrmse_1", "nrmse_5")


def findings(table: list[dict]) -> dict:
    """What the table says, as numbers the docs can quote (all from ``table``'s means).

    * ``gains``: per (target, n_train, metric), the pretrained AViT's error below the same AViT
      from scratch, in percent (``100 * (1 - pretrained / scratch)``);
    * ``baseline_wins``: per baseline, in how many of the (target, n_train, metric) cells it
      has a lower mean error than both AViT arms, out of ``cells``.
    """
    mean = {(r["target"], r["n_train"], r["arm"]): r for r in table}
    cells = sorted({(r["target"], r["n_train"]) for r in table})
    gains, wins = [], {}
    for target, n in cells:
        for m in METRICS:
            arm = lambda a: mean.get((target, n, a), {}).get(m, (np.nan,))[0]  # noqa: B023
            pre, scratch = arm("pretrained"), arm("scratch")
            gains.append(
                {
                    "target": target,
                    "n_train": n,
                    "metric": m,
                    "gain_pct": float(100 * (1 - pre / scratch)),
                }
            )
            for base in ("fno", "unet"):
                if (target, n, base) in mean:
                    wins[base] = wins.get(base, 0) + int(arm(base) < min(pre, scratch))
    return {"gains": gains, "baseline_wins": wins, "cells": len(cells) * len(METRICS)}


def report(
    table: list[dict], study: StudyOptions, wall: float, command: str, pretrain: dict | None = None
) -> str:
    """The report.md text: the table with its command, seeds and wall time, and the
    pretraining run's own eval (:func:`pretrain_summary`) when given."""
    fmt = lambda ms: f"{ms[0]:.4f} ± {ms[1]:.4f}" if np.isfinite(ms[1]) else f"{ms[0]:.4f}"
    lines = [
        "# Surrogate transfer study",
        "",
        f"command: `{command}`",
        "",
        f"study: `{json.dumps(dataclasses.asdict(study))}`",
        "",
        f"seeds: {list(study.seeds)}; wall time: {wall / 60:.1f} min",
        "",
        "held-out target trajectories; mean ± standard error over seeds",
        "",
        _windows_line(table),
        "",
        "| target | traj | arm | NRMSE 1-step | VRMSE 1-step | NRMSE rollout step 1 "
        "| NRMSE 5-step mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        roll1 = fmt(r["nrmse_roll1"]) if "nrmse_roll1" in r else "—"
        lines.append(
            f"| {r['target']} | {r['n_train']} | {r['arm']} | {fmt(r['nrmse_1'])} | "
            f"{fmt(r['vrmse_1'])} | {roll1} | {fmt(r['nrmse_5'])} |"
        )
    lines += [
        "",
        "NRMSE 1-step averages every held-out window (every start frame of every held-out "
        "trajectory); rollout step 1 is the same one-step prediction from the first window of "
        "each rolled-out trajectory only (frames 0 to n_steps_input - 1), where decaying "
        "flows change fastest, so it is usually the larger of the two. The 5-step mean "
        "continues those rollouts.",
    ]
    f = findings(table)
    lines += ["", "pretrained vs scratch AViT (NRMSE, % lower):", ""]
    lines += [
        f"- {g['target']}, {g['n_train']} traj, {g['metric']}: {g['gain_pct']:.1f}%"
        for g in f["gains"]
    ]
    lines += [
        "",
        *(
            f"{b} beats both AViT arms in {k} of {f['cells']} cells"
            for b, k in f["baseline_wins"].items()
        ),
        *_pretrain_lines(pretrain or {}),
    ]
    return "\n".join(lines) + "\n"


def _windows_line(table: list[dict]) -> str:
    """How many one-step windows each target's numbers average (runs that recorded it)."""
    counts: dict[str, set] = {}
    for r in table:
        counts.setdefault(r["target"], set()).update(
            w for w in r.get("eval_windows", []) if w is not None
        )
    known = {t: sorted(c) for t, c in counts.items() if c}
    if not known:
        return "one-step windows scored per target: not recorded by these runs"
    each = "; ".join(f"{t}: {', '.join(map(str, c))}" for t, c in known.items())
    return f"one-step windows scored per target (held-out windows of the target system): {each}"


PRETRAIN_KEYS = ("windows", "nrmse", "persistence_nrmse", "vrmse", "persistence_vrmse")
"""The pretraining run's one-step eval kept in the study's summary."""


def _run_eval(path: str) -> dict:
    """``key -> {"mean" (or "total" for windows) | system -> value}`` of one pretraining run's
    results.json; empty when the run has not written it."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        res = json.load(f)
    out = {}
    for key in PRETRAIN_KEYS:
        head = f"eval/{key}"
        per = {k[len(head) + 1 :]: v for k, v in res.items() if k.startswith(head + "/")}
        per = {k: v for k, v in per.items() if "/" not in k}  # systems, not fields
        if head in res:
            out[key] = {"mean" if key != "windows" else "total": res[head], **per}
    return out


def pretrain_summary(root: str, study: StudyOptions | None = None) -> dict:
    """One-step eval of the study's pretraining: per system and the mean over systems, model
    and persistence, with the windows scored; empty when no pretraining run has written its
    results.

    With one pretraining (``study`` None, or ``pretrain_per_seed`` false: ``root/pretrain``)
    every value is that run's number. With one per seed (``root/pretrain_s{seed}``), every
    value is ``[mean, standard error]`` over the seeds whose run has written its results,
    listed under ``seeds``; the window counts, the same for every seed (the data are
    fixed), stay plain numbers.
    """
    if study is None or not study.pretrain_per_seed:
        return _run_eval(os.path.join(root, PRETRAIN_DIR, "results.json"))
    per_seed = {
        seed: _run_eval(os.path.join(workdir, "results.json"))
        for seed, workdir in pretrain_dirs(root, study).items()
    }
    per_seed = {seed: ev for seed, ev in per_seed.items() if ev}
    if not per_seed:
        return {}
    evals = list(per_seed.values())
    out: dict = {"seeds": list(per_seed)}
    for key in PRETRAIN_KEYS:
        names = [k for k in evals[0].get(key, {}) if all(k in ev.get(key, {}) for ev in evals)]
        if not names:
            continue
        values = {k: [ev[key][k] for ev in evals] for k in names}
        out[key] = {
            k: float(np.mean(v)) if key == "windows" else list(_mean_se(v))
            for k, v in values.items()
        }
    return out


def _pretrain_lines(pre: dict) -> list[str]:
    if not pre.get("nrmse"):
        return []
    systems = [k for k in pre["nrmse"] if k != "mean"]
    windows = pre.get("windows", {})
    seeds = pre.get("seeds")
    over = f"; mean ± standard error over pretraining seeds {seeds}" if seeds else ""
    lines = [
        "",
        "pretraining, one-step NRMSE on held-out windows of each pretraining system "
        f"(model / persistence; windows{over}):",
        "",
        "| system | model | persistence | windows |",
        "|---|---|---|---|",
    ]
    for name in systems:
        lines.append(
            f"| {name} | {_value(pre['nrmse'][name])} | "
            f"{_value(pre['persistence_nrmse'][name])} | "
            f"{windows.get(name, float('nan')):.0f} |"
        )
    lines.append(
        f"| mean over systems | {_value(pre['nrmse']['mean'])} | "
        f"{_value(pre['persistence_nrmse']['mean'])} | "
        f"{windows.get('total', float('nan')):.0f} |"
    )
    return lines


def _value(v) -> str:
    """One pretraining number (a run's) or ``[mean, se]`` over seeds, as the table shows it."""
    if isinstance(v, (list, tuple)):
        mean, se = v
        return f"{mean:.4f} ± {se:.4f}" if np.isfinite(se) else f"{mean:.4f}"
    return f"{v:.4f}"


def rewrite_report(root: str) -> dict:
    """Recomputes summary, findings and report.md of a finished study in ``root`` from the
    per-run numbers in its results.json (no training): for a report whose code changed.
    command.txt and config.json stay as the study wrote them; a config.json without
    ``pretrain_per_seed`` is a study that pretrained once (``root/pretrain``). Without the
    pretraining runs on disk, the pretraining summary already in results.json is kept."""
    from jaxfm.config import from_dict

    paths = {n: os.path.join(root, n) for n in ("results.json", "config.json", "command.txt")}
    for name, path in paths.items():
        if not os.path.exists(path):
            raise SystemExit(f"{path}: no {name}; run the study first (without --report_only)")
    with open(paths["results.json"]) as f:
        out = json.load(f)
    with open(paths["config.json"]) as f:
        raw = dict(json.load(f).get("study", {}))
    # a study written before the option pretrained once (ROOT/pretrain)
    raw.setdefault("pretrain_per_seed", False)
    study = from_dict(StudyOptions, raw, where=paths["config.json"])
    with open(paths["command.txt"]) as f:
        command = f.read().strip()
    table = summarize(out["runs"])
    out = {
        **out,
        "summary": table,
        "findings": findings(table),
        # a copied study folder (results/) has no pretraining runs: keep what they said
        "pretrain": pretrain_summary(root, study) or out.get("pretrain", {}),
    }
    with open(paths["results.json"], "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    text = report(table, study, out["wall_time_s"], command, out["pretrain"])
    with open(os.path.join(root, "report.md"), "w") as f:
        f.write(text)
    return out
