"""The lever ablation: the transfer study re-run with one training lever changed at a time.

Each variant is a set of config overrides (``StudyOptions.overrides`` for pretraining and
fine-tuning, ``pretrain_overrides`` for pretraining only) on the same base study; every
variant pretrains and fine-tunes its own models in WORKDIR/<variant>/, so a variant is a
whole transfer study and resumes like one. The table reports, per variant and target, the
pretrained and scratch AViT's one-step and 5-step NRMSE beside persistence, and the change
against the baseline row. Used by ``experiments.surrogate_ablation``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxfm.tasks.surrogate.transfer import StudyOptions, run_study, summarize

VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name -> (overrides of every run, overrides of the pretraining only)
    "baseline": ((), ()),
    "increment units": (("model.avit.delta_scale=increment",), ()),
    "increment loss": (("model.loss=increment",), ()),
    "patch jitter": (("model.avit.patch_jitter=true",), ()),
    "input noise 0.01": (("model.avit.input_noise=0.01",), ()),
    "time strides 1-2": ((), ("data.time_strides=1,2",)),
    "weight decay 0.05": (("train.weight_decay=0.05",), ()),
    "constant lr": (("train.schedule=constant",), ()),
    "unroll 2": (("model.unroll=2",), ()),
    "increment loss + constant lr": (("model.loss=increment", "train.schedule=constant"), ()),
}
"""The levers, each alone on top of the base study's presets."""


@dataclasses.dataclass(frozen=True)
class AblationOptions:
    """Which variants of which base study."""

    study: StudyOptions = dataclasses.field(default_factory=StudyOptions)
    """The base study (presets, targets, trajectories, seeds, arms); its own overrides are
    kept and each variant's are added after them."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """Variant names (keys of jaxfm.tasks.surrogate.ablation.VARIANTS; baseline first)."""
    patch: tuple[str, ...] = ()
    """Extra variants that change the patch: stem strides, e.g. 2 or 4 (one stage of that
    stride) or 2,2 (two stages, patch 4), one variant per entry, written as products
    of digits: "2", "22", "222"."""


def variant_overrides(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(overrides, pretrain_overrides) of the variant ``name`` (``patch <digits>`` included)."""
    if name.startswith("patch ") and name[6:].isdigit():
        strides = ",".join(name[6:])
        return (f"model.avit.patch_strides={strides}",), ()
    if name not in VARIANTS:
        raise ValueError(
            f"unknown ablation variant {name!r}; choose from {sorted(VARIANTS)} or 'patch <digits>'"
        )
    return VARIANTS[name]


def variant_dir(name: str) -> str:
    """The directory name of a variant (spaces and dots made safe)."""
    return name.replace(" + ", "_and_").replace(" ", "_").replace(".", "p").replace("-", "_")


def run_ablation(root: str, opts: AblationOptions) -> tuple[list[dict], float]:
    """Runs (or resumes) every variant's study under ``root``; returns the rows and wall time.

    A row is one summary row of :func:`jaxfm.tasks.surrogate.transfer.summarize` (target,
    n_train, arm, metric means and standard errors) with its ``variant``.
    """
    names = list(opts.variants) + [f"patch {p}" for p in opts.patch]
    for name in names:  # every name checked before hours of training
        variant_overrides(name)
    rows, wall = [], 0.0
    cache = opts.study.cache_dir or os.path.join(root, "pde_cache")
    for name in names:
        every, pre = variant_overrides(name)
        study = dataclasses.replace(
            opts.study,
            cache_dir=cache,
            overrides=opts.study.overrides + every,
            pretrain_overrides=opts.study.pretrain_overrides + pre,
        )
        print(f"== ablation variant: {name} {list(every + pre)}", flush=True)
        runs, seconds = run_study(os.path.join(root, variant_dir(name)), study)
        wall += seconds
        rows += [{"variant": name, **row} for row in summarize(runs)]
    return rows, wall


def _cell(row: dict, metric: str) -> str:
    mean, se = row[metric]
    text = f"{mean:.4f}" if abs(mean) < 1e3 else f"{mean:.3g}"
    return text if not np.isfinite(se) or se == 0 else f"{text} ± {se:.4f}"


def changes(rows: list[dict], baseline: str = "baseline") -> list[dict]:
    """Per non-baseline row and metric (nrmse_1, nrmse_5): the change of the mean against the
    same (target, n_train, arm) of ``baseline``, in percent (negative = lower error)."""
    base = {(r["target"], r["n_train"], r["arm"]): r for r in rows if r["variant"] == baseline}
    out = []
    for r in rows:
        b = base.get((r["target"], r["n_train"], r["arm"]))
        if b is None or r["variant"] == baseline or r["arm"] == "persistence":
            continue
        for m in ("nrmse_1", "nrmse_5"):
            pct = 100 * (r[m][0] / b[m][0] - 1)
            out.append(
                {
                    **{k: r[k] for k in ("variant", "target", "n_train", "arm")},
                    "metric": m,
                    "change_pct": float(pct),
                }
            )
    return out


def ablation_table(rows: list[dict], baseline: str = "baseline") -> str:
    """Markdown: one line per (target, n_train, variant, arm): the one-step and 5-step NRMSE
    with their change against the same arm of ``baseline`` (:func:`changes`), and the NRMSE
    at the last rollout step (long-horizon stability: persistence's is on its row)."""
    pct = {
        (c["variant"], c["target"], c["n_train"], c["arm"], c["metric"]): c["change_pct"]
        for c in changes(rows, baseline)
    }
    out = [
        "| target | traj | variant | arm | NRMSE 1-step | change | NRMSE 5-step | change "
        "| NRMSE last step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["arm"] == "persistence" and r["variant"] != baseline:
            continue
        key = (r["variant"], r["target"], r["n_train"], r["arm"])

        def change(metric, key=key):
            return f"{pct[(*key, metric)]:+.1f}%" if (*key, metric) in pct else ""

        last = _cell(r, "nrmse_last") if "nrmse_last" in r else "—"
        out.append(
            f"| {r['target']} | {r['n_train']} | {r['variant']} | {r['arm']} | "
            f"{_cell(r, 'nrmse_1')} | {change('nrmse_1')} | "
            f"{_cell(r, 'nrmse_5')} | {change('nrmse_5')} | {last} |"
        )
    return "\n".join(out)
