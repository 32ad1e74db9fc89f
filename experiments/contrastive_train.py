"""AstroCLIP-style contrastive alignment of galaxy images and spectra, then full evaluation.

    python -m experiments.contrastive_train smoke --workdir runs/contrastive-smoke
    python -m experiments.contrastive_train default --workdir runs/contrastive
    python -m experiments.contrastive_train default \
        --spectrum_init runs/specformer/spectrum_encoder.npz
    python -m experiments.contrastive_train default --model.loss siglip --model.init_bias -5

Writes config.json, metrics.jsonl, checkpoints/, results.json, report.md (the AstroCLIP-shaped
table), loss.png, retrieval_gallery.png and embedding_pca.png to WORKDIR, and the study folder
``--results_dir`` (default WORKDIR/study): command.txt, config.json, results.json, report.md
and the three plots; ``--results_dir results/contrastive`` refreshes the committed folder.
The numbers to read: i2s/s2i
top-1/top-5 against chance k/N and the random-init control, and the cross-modal k-NN R^2.
``python -m experiments.contrastive_eval PRESET --workdir W`` recomputes the evaluation (and
the baselines) from a workdir.
The config, the default/long/smoke presets and the evaluation live in
``jaxfm.tasks.contrastive.experiment``.
"""

from __future__ import annotations

import dataclasses

import jaxfm
from jaxfm.config import run_cli
from jaxfm.tasks.contrastive.experiment import Config, default, long, smoke, train_and_evaluate


def _spectrum_trunk(name: str, mixer: str, ffn: str) -> Config:
    """``default`` with the spectrum encoder's trunk swapped to ``mixer`` + ``ffn``."""
    base = default()
    spectrum = base.model.spectrum
    trunk = dataclasses.replace(spectrum.trunk, mixer=mixer, ffn=ffn)
    model = dataclasses.replace(base.model, spectrum=dataclasses.replace(spectrum, trunk=trunk))
    return dataclasses.replace(base, workdir=f"runs/contrastive-{name}", model=model)


def spectrum_mamba() -> Config:
    """``default`` with a (bidirectional) Mamba trunk in the spectrum encoder."""
    return _spectrum_trunk("mamba", "mamba", "none")


def spectrum_mamba2() -> Config:
    """``default`` with a (bidirectional) Mamba-2 / SSD trunk in the spectrum encoder."""
    return _spectrum_trunk("mamba2", "mamba2", "none")


def spectrum_moe() -> Config:
    """``default`` with attention + top-2 MoE feed-forward blocks in the spectrum encoder."""
    return _spectrum_trunk("moe", "attention", "moe")


PRESETS = {
    "default": default,
    "long": long,
    "smoke": smoke,
    "spectrum_mamba": spectrum_mamba,
    "spectrum_mamba2": spectrum_mamba2,
    "spectrum_moe": spectrum_moe,
}


def main(cfg: Config, command: str | None = None) -> dict:
    """Trains, evaluates, writes the study folder; returns the results dict."""
    return train_and_evaluate(cfg, command)


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
