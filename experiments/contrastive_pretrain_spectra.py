"""SpecFormer masked-modelling pretraining on synthetic galaxy spectra (AstroCLIP §3.2).

    python -m experiments.contrastive_pretrain_spectra smoke --workdir runs/specformer-smoke
    python -m experiments.contrastive_pretrain_spectra default --workdir runs/specformer

Writes config.json, metrics.jsonl, checkpoints/, results.json, report.md, loss.png,
reconstruction.png and spectrum_encoder.npz (the encoder for
``contrastive_train.py --spectrum_init``). The numbers to read: eval/mse_masked against
eval/mse_zero_baseline (predicting the standardised mean), and the spectrum-only k-NN R^2 of
mean-token embeddings against a random-initialised encoder.
"""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jaxfm
from jaxfm.ckpt import CkptConfig
from jaxfm.config import ExperimentConfig, run_cli
from jaxfm.data.galaxies import GalaxyConfig, load_splits
from jaxfm.data.sources import ArraySource
from jaxfm.models.specformer import SpecFormerConfig, chunk_mask, spectrum_tokenize
from jaxfm.models.vit import mean_token
from jaxfm.nn.trunk import AttentionConfig, TrunkConfig
from jaxfm.tasks.contrastive.evaluate import PROPS
from jaxfm.tasks.contrastive.retrieval import knn_r2
from jaxfm.tasks.contrastive.task import SpecFormerPretrainTask, save_encoder
from jaxfm.train import TrainConfig, load_model, run, write_results
from jaxfm.train.plots import plot_metrics


@dataclasses.dataclass(frozen=True)
class Config(ExperimentConfig):
    """SpecFormer pretraining experiment."""

    model: SpecFormerConfig = dataclasses.field(default_factory=SpecFormerConfig)
    """The spectrum encoder."""
    data: GalaxyConfig = dataclasses.field(default_factory=GalaxyConfig)
    """Synthetic galaxies (only spectra are used)."""


def default() -> Config:
    """Width 64, depth 2 (the encoder of contrastive_train.py default), 1500 steps, batch 64."""
    return Config(
        workdir="runs/specformer",
        model=SpecFormerConfig(trunk=TrunkConfig(depth=2, dim=64)),
        data=GalaxyConfig(n_train=4096, n_eval=1024),
        train=TrainConfig(
            steps=1500,
            batch_size=64,
            lr=1e-3,
            warmup_steps=100,
            weight_decay=0.1,
            b2=0.95,
            log_every=50,
            eval_every=500,
        ),
        ckpt=CkptConfig(every=500),
    )


def smoke() -> Config:
    """About a minute on CPU: a tiny encoder, 40 steps."""
    return Config(
        workdir="runs/specformer-smoke",
        model=SpecFormerConfig(
            spectrum_len=128, trunk=TrunkConfig(depth=1, dim=32, attention=AttentionConfig(heads=2))
        ),
        data=GalaxyConfig(n_train=256, n_eval=128, image_size=16, spectrum_len=128),
        train=TrainConfig(
            steps=40, batch_size=32, lr=2e-3, warmup_steps=5, log_every=10, eval_every=20
        ),
        ckpt=CkptConfig(every=20),
    )


PRESETS = {"default": default, "smoke": smoke}


def _mean_embeddings(model, spectra: np.ndarray, batch: int = 256) -> np.ndarray:
    fwd = nnx.jit(lambda m, s: mean_token(m(s)))
    return np.concatenate(
        [
            np.asarray(fwd(model, jnp.asarray(spectra[i : i + batch])))
            for i in range(0, len(spectra), batch)
        ]
    )


def _plot_reconstruction(path: str, model, spectra: np.ndarray, cfg: SpecFormerConfig) -> str:
    import jax

    tok = spectrum_tokenize(jnp.asarray(spectra[:3]), cfg)
    mask = chunk_mask(jax.random.key(0), 3, cfg)
    pred = nnx.jit(lambda m, t, k: m.reconstruct(m.encode_tokens(t, mask=k)))(model, tok, mask)
    fig, axes = plt.subplots(3, 1, figsize=(8, 6))
    for i, ax in enumerate(axes):
        t, p, m = (
            np.asarray(tok[i, 1:, : cfg.section]),
            np.asarray(pred[i, 1:, : cfg.section]),
            np.asarray(mask[i, 1:]),
        )
        x = np.arange(cfg.section)[None, :] + cfg.stride * np.arange(t.shape[0])[:, None]
        ax.plot(x[:, : cfg.stride].ravel(), t[:, : cfg.stride].ravel(), "k", lw=0.7, label="input")
        for j in np.flatnonzero(m):
            ax.plot(
                x[j],
                p[j],
                "r",
                lw=1.0,
                label="reconstruction (masked)" if j == np.flatnonzero(m)[0] else None,
            )
            ax.axvspan(x[j, 0], x[j, -1], color="r", alpha=0.05)
        ax.set_ylabel("standardised flux")
    axes[0].legend(fontsize=7)
    axes[-1].set_xlabel("pixel")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(cfg: Config) -> dict:
    """Pretrains, evaluates the embeddings against a random encoder, saves the encoder."""
    if cfg.model.spectrum_len != cfg.data.spectrum_len:
        raise SystemExit(
            f"model.spectrum_len={cfg.model.spectrum_len} differs from "
            f"data.spectrum_len={cfg.data.spectrum_len}"
        )
    train, held_out = load_splits(cfg.data, drop=("image",))  # spectra and properties
    task = SpecFormerPretrainTask(cfg.model)
    results = run(
        cfg,
        task,
        ArraySource({"spectrum": train["spectrum"]}, "spectra-train"),
        ArraySource({"spectrum": held_out["spectrum"]}, "spectra-eval"),
    )
    model = load_model(cfg.workdir, task, cfg)
    control = task.build_model(nnx.Rngs(cfg.train.seed + 1000))
    props = [p for p in PROPS if p in train]
    extra = {}
    for name, m in (("pretrained", model), ("random_init", control)):
        r2 = knn_r2(
            _mean_embeddings(m, train["spectrum"]),
            {p: train[p] for p in props},
            _mean_embeddings(m, held_out["spectrum"]),
            {p: held_out[p] for p in props},
        )
        extra.update({f"knn_s2s_{name}/r2_{p}": v for p, v in r2.items()})
    enc_path = os.path.join(cfg.workdir, "spectrum_encoder.npz")
    save_encoder(enc_path, model, cfg.model)
    plots = [
        p
        for p in (
            plot_metrics(
                cfg.workdir,
                ["loss", "eval/mse_masked", "eval/mse_zero_baseline"],
                title="SpecFormer masked modelling",
                filename="loss.png",
            ),
            _plot_reconstruction(
                os.path.join(cfg.workdir, "reconstruction.png"),
                model,
                held_out["spectrum"],
                cfg.model,
            ),
        )
        if p
    ]
    results = write_results(cfg.workdir, {**extra, "spectrum_encoder": enc_path, "plots": plots})
    lines = [
        "# SpecFormer pretraining",
        "",
        f"masked MSE {results.get('eval/mse_masked', float('nan')):.4f} vs zero-prediction "
        f"baseline {results.get('eval/mse_zero_baseline', float('nan')):.4f} "
        f"after {results['step']} steps ({results['wall_time_s']:.0f} s)",
        "",
        "| encoder | " + " | ".join(f"k-NN R² {p}" for p in props) + " |",
        "|---|" + "---|" * len(props),
    ]
    for name in ("pretrained", "random_init"):
        lines.append(
            f"| {name} | "
            + " | ".join(f"{extra[f'knn_s2s_{name}/r2_{p}']:.3f}" for p in props)
            + " |"
        )
    with open(os.path.join(cfg.workdir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    jaxfm.configure_cpu()
    run_cli(main, Config, PRESETS, doc=__doc__)
