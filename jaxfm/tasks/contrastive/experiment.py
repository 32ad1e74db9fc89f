"""The contrastive image/spectrum experiment: config, presets, the full evaluation of a
trained run (retrieval, k-NN, probes, baselines, plots, report.md) and train-then-evaluate.
Used by ``experiments.contrastive_train``, ``experiments.contrastive_eval`` and the notebook."""

from __future__ import annotations

import dataclasses
import os
import shutil

import jax
from flax import nnx

from jaxfm.ckpt import CkptConfig
from jaxfm.config import ExperimentConfig
from jaxfm.data.galaxies import GalaxyConfig, make_sources, read_rows
from jaxfm.models.contrastive import ContrastiveConfig
from jaxfm.models.resnet import ResNetConfig
from jaxfm.models.specformer import SpecFormerConfig
from jaxfm.models.vit import ViTConfig
from jaxfm.nn.trunk import AttentionConfig, TrunkConfig
from jaxfm.provenance import command_line, write_study
from jaxfm.tasks.contrastive.evaluate import (
    evaluate_contrastive,
    results_table,
    supervised_baselines,
)
from jaxfm.tasks.contrastive.plots import save_plots
from jaxfm.tasks.contrastive.task import ContrastiveTask, load_encoder
from jaxfm.train import TrainConfig, load_model, run, write_results
from jaxfm.train.plots import plot_metrics


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation after training."""

    knn_k: int = 16
    """Neighbours of the cosine k-NN regression."""
    probes: bool = True
    """Fit the ridge probe and few-shot MLP on the embeddings."""
    probe_epochs: int = 30
    """Epochs of the few-shot MLP."""
    baselines: bool = True
    """Also evaluate a random-initialised control and supervised raw-input MLPs."""


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """Contrastive image/spectrum experiment."""

    model: ContrastiveConfig = dataclasses.field(default_factory=ContrastiveConfig)
    """The two towers, heads and loss."""
    data: GalaxyConfig = dataclasses.field(default_factory=GalaxyConfig)
    """Synthetic galaxies, or an HDF5 file (``--data.path``: AstroCLIP's export or jaxfm's)."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """Evaluation after training."""
    spectrum_init: str | None = None
    """spectrum_encoder.npz of a contrastive_pretrain_spectra.py run (None: random init)."""
    results_dir: str = ""
    """Study folder (command.txt, config.json, results.json, report.md and the plots) written
    after training and evaluation; empty: WORKDIR/study."""


def _model(dim: int, depth: int, size: int, length: int, embed: int) -> ContrastiveConfig:
    trunk = TrunkConfig(
        depth=depth, dim=dim, attention=AttentionConfig(heads=4 if dim >= 64 else 2)
    )
    return ContrastiveConfig(
        vit=ViTConfig(image_size=size, patch=4, trunk=trunk),
        resnet=ResNetConfig(widths=(dim // 4, dim // 2, dim)),
        spectrum=SpecFormerConfig(spectrum_len=length, trunk=trunk),
        embed_dim=embed,
        head_heads=trunk.attention.heads,
        head_mlp_ratio=2.0,
    )


def default() -> Config:
    """The reference calibration (§7): width 64, 400 steps, batch 128, 4096 pairs, gallery 1024."""
    return Config(
        workdir="runs/contrastive",
        model=_model(64, 2, 32, 256, 64),
        data=GalaxyConfig(n_train=4096, n_eval=1024, flip_rotate=True),
        train=TrainConfig(
            steps=400,
            batch_size=128,
            lr=2e-3,
            warmup_steps=40,
            weight_decay=0.05,
            min_lr_ratio=0.05,
            log_every=20,
            eval_every=200,
        ),
        ckpt=CkptConfig(every=200),
    )


def long() -> Config:
    """The nightly setting: 2000 steps, batch 256, 8192 pairs (about an hour on 2 busy cores)."""
    base = default()
    return dataclasses.replace(
        base,
        workdir="runs/contrastive-long",
        data=dataclasses.replace(base.data, n_train=8192),
        train=dataclasses.replace(
            base.train, steps=2000, batch_size=256, warmup_steps=100, eval_every=500
        ),
        ckpt=CkptConfig(every=500),
    )


def smoke() -> Config:
    """About a minute on CPU: tiny towers, 30 steps, 16x16 images."""
    return Config(
        workdir="runs/contrastive-smoke",
        model=_model(32, 1, 16, 128, 32),
        data=GalaxyConfig(
            n_train=256, n_eval=128, image_size=16, spectrum_len=128, flip_rotate=True
        ),
        train=TrainConfig(
            steps=30, batch_size=32, lr=3e-3, warmup_steps=5, log_every=10, eval_every=15
        ),
        ckpt=CkptConfig(every=15),
        eval=EvalConfig(probe_epochs=1),
    )


PRESETS = {"default": default, "long": long, "smoke": smoke}


def check_config(cfg: Config) -> None:
    m, d = cfg.model, cfg.data
    if m.spectrum.spectrum_len != d.spectrum_len:
        raise SystemExit(
            f"model.spectrum.spectrum_len={m.spectrum.spectrum_len} differs from "
            f"data.spectrum_len={d.spectrum_len}"
        )
    if m.image_encoder == "vit" and m.vit.image_size != d.image_size:
        raise SystemExit(
            f"model.vit.image_size={m.vit.image_size} differs from data.image_size={d.image_size}"
        )


def check_data_shapes(cfg: Config, source) -> None:
    """Raise unless the towers fit the data on disk (an AstroCLIP file: 152 px, 7781 pixels)."""
    m, d = cfg.model, cfg.data
    side, length = source.image_shape[0], source.spectrum_len
    if d.image_size != side or m.spectrum.spectrum_len != length:
        raise SystemExit(
            f"{d.path}: images are {side} px and spectra {length} pixels; set "
            f"--data.image_size {side} --data.spectrum_len {length} "
            f"--model.vit.image_size {side} --model.spectrum.spectrum_len {length} "
            f"(config has {d.image_size} and {m.spectrum.spectrum_len})"
        )


def evaluate_run(cfg: Config, task: ContrastiveTask, train: dict, gallery: dict) -> dict:
    """Full evaluation of the trained model in ``cfg.workdir`` (+ baselines); returns results."""
    model = load_model(cfg.workdir, task, cfg)
    ev = cfg.eval
    metrics, emb = evaluate_contrastive(
        model,
        train,
        gallery,
        cfg.data,
        k=ev.knn_k,
        probes=ev.probes,
        probe_epochs=ev.probe_epochs,
        seed=cfg.train.seed,
    )
    out = {f"final/{k}": v for k, v in metrics.items()}
    rows = {
        "Image|contrastive, k-NN (in-modal)|knn_i2i": metrics,
        "Image|contrastive, k-NN (spectrum neighbours)|knn_i2s": metrics,
        "Spectrum|contrastive, k-NN (in-modal)|knn_s2s": metrics,
        "Spectrum|contrastive, k-NN (image neighbours)|knn_s2i": metrics,
    }
    if ev.probes:
        rows["Image|contrastive + MLP few-shot|probe_image/mlp"] = metrics
        rows["Spectrum|contrastive + MLP few-shot|probe_spectrum/mlp"] = metrics
    if ev.baselines:
        ctl, _ = evaluate_contrastive(
            task.build_model(nnx.Rngs(cfg.train.seed + 1000)),
            train,
            gallery,
            cfg.data,
            k=ev.knn_k,
            probes=False,
        )
        out.update({f"control/{k}": v for k, v in ctl.items()})
        rows["Image|random init, k-NN (in-modal)|knn_i2i"] = ctl
        rows["Image|random init, k-NN (spectrum neighbours)|knn_i2s"] = ctl
        rows["Spectrum|random init, k-NN (in-modal)|knn_s2s"] = ctl
        sup = supervised_baselines(train, gallery, epochs=ev.probe_epochs, seed=cfg.train.seed)
        out.update(sup)
        rows["Image|supervised MLP on pixels|supervised_image"] = sup
        rows["Spectrum|supervised MLP on spectra|supervised_spectrum"] = sup
    plots = save_plots(cfg.workdir, gallery, emb)
    loss_plot = plot_metrics(
        cfg.workdir, ["loss", "eval/loss"], title="contrastive loss", filename="loss.png"
    )
    table = results_table(rows)
    n = int(metrics["gallery_size"])
    out["final/chance_top1"], out["final/chance_top5"] = 1 / n, 5 / n
    with open(os.path.join(cfg.workdir, "report.md"), "w") as f:
        f.write(
            f"# Contrastive image/spectrum model ({cfg.workdir})\n\n"
            f"Gallery N = {n} (chance top-1 {1 / n:.4f}, top-5 {5 / n:.4f}); "
            f"k-NN k = {ev.knn_k}, cosine on normalised embeddings.\n\n{table}"
        )
    print(table)
    return write_results(cfg.workdir, {**out, "plots": plots + ([loss_plot] if loss_plot else [])})


def write_contrastive_study(cfg: Config, results: dict, command: str) -> str:
    """Copies the evaluated run into its study folder (``cfg.results_dir``, default
    WORKDIR/study): command.txt, config.json, results.json (the run's results), report.md
    and the plots. Returns the folder."""
    where = cfg.results_dir or os.path.join(cfg.workdir, "study")
    if jax.process_index() != 0:
        return where
    with open(os.path.join(cfg.workdir, "report.md")) as f:
        report = f.read()
    write_study(where, command=command, config=cfg, results=results, report=report)
    for path in results.get("plots", []):
        if path and os.path.exists(path):
            shutil.copy2(path, os.path.join(where, os.path.basename(path)))
    return where


def train_and_evaluate(cfg: Config, command: str | None = None) -> dict:
    """Trains, evaluates, writes the study folder (:func:`write_contrastive_study`; the
    command defaults to this process's); returns the results dict."""
    check_config(cfg)
    train_src, eval_src = make_sources(cfg.data)
    check_data_shapes(cfg, train_src)
    params = load_encoder(cfg.spectrum_init, cfg.model.spectrum) if cfg.spectrum_init else None
    task = ContrastiveTask(cfg.model, spectrum_params=params)
    run(cfg, task, train_src, eval_src)
    limit = cfg.data.eval_max
    results = evaluate_run(cfg, task, read_rows(train_src, limit), read_rows(eval_src, limit))
    write_contrastive_study(cfg, results, command or command_line())
    return results
