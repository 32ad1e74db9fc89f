"""Training tasks for the contrastive family, and batched embedding of a data set.

Design note. :class:`ContrastiveTask` and :class:`SpecFormerPretrainTask` implement the
``jaxfm.train.Task`` protocol (``build_model``, ``loss``, ``eval_metrics``, ``trainable``) so
``jaxfm.train.run`` trains them like any model. Batches are dicts with ``image`` (B, H, W, 3)
and ``spectrum`` (B, L, 1) (AstroCLIP layout, see ``jaxfm.data.galaxies``). The contrastive
loss is computed on the *global* batch (the engine shards the batch over the data axis and XLA
gathers the embeddings), so every pair of the global batch is a negative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfm.models.contrastive import ContrastiveConfig, ContrastiveModel, trainable_filter
from jaxfm.models.specformer import SpecFormer, SpecFormerConfig, masked_modelling_loss
from jaxfm.parallel.mesh import BATCH_AXES
from jaxfm.tasks.contrastive.losses import (
    in_batch_accuracy,
    infonce_loss,
    infonce_loss_local,
    siglip_loss,
    siglip_loss_local,
)


def bound_batch_axes() -> tuple[str, ...]:
    """Batch mesh axes bound by an enclosing ``shard_map`` (empty under plain ``jit``)."""
    axes = []
    for name in BATCH_AXES:
        try:
            jax.lax.axis_size(name)
        except (NameError, ValueError):
            continue
        axes.append(name)
    return tuple(axes)


def contrastive_objective(
    model: ContrastiveModel, za: jax.Array, zb: jax.Array, *, accuracy: bool = True
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The configured loss of paired embeddings and its metrics.

    Under ``jit`` (the engine's default step) ``za``/``zb`` are the global batch. Inside the
    engine's ``shard_map`` step they are this device's rows: the ``*_local`` losses then
    all-gather the other devices' embeddings, so the loss is still the global one (the engine's
    ``pmean`` of an already global value leaves it unchanged). The in-batch accuracies
    (``accuracy=True``) are per device in that case. The training loss leaves them out: each
    is another global similarity matrix, i.e. more cross-device collectives per step, and on
    the CPU host platform concurrent independent collectives can deadlock XLA's in-process
    rendezvous when the cores are oversubscribed (seen with 8 simulated devices).
    """
    scale = model.scale()
    axes = bound_batch_axes()
    if model.cfg.loss == "infonce":
        loss = infonce_loss_local(za, zb, scale, axes) if axes else infonce_loss(za, zb, scale)
    elif axes:
        loss = siglip_loss_local(za, zb, scale, model.logit_bias[...], axes)
    else:
        loss = siglip_loss(za, zb, scale, model.logit_bias[...])
    metrics = {"scale": scale}
    if accuracy:
        metrics["acc_i2s"] = in_batch_accuracy(za, zb)
        metrics["acc_s2i"] = in_batch_accuracy(zb, za)
    if model.logit_bias is not None:
        metrics["bias"] = model.logit_bias[...]
    return loss, metrics


class ContrastiveTask:
    """Image <-> spectrum contrastive alignment (AstroCLIP)."""

    def __init__(self, cfg: ContrastiveConfig, spectrum_params: dict | None = None):
        """Args: cfg: the model; spectrum_params: a pretrained SpecFormer's parameters (pure
        dict, see :func:`load_encoder`) that replace the spectrum encoder's initialisation."""
        self.cfg = cfg
        self.trainable = trainable_filter(cfg)
        self.spectrum_params = spectrum_params

    def build_model(self, rngs: nnx.Rngs) -> ContrastiveModel:
        """A fresh :class:`ContrastiveModel` (with the pretrained spectrum encoder if given)."""
        model = ContrastiveModel(self.cfg, rngs=rngs)
        if self.spectrum_params is not None:
            state = nnx.state(model.spectrum_encoder, nnx.Param)
            nnx.replace_by_pure_dict(state, self.spectrum_params)
            nnx.update(model.spectrum_encoder, state)
        return model

    def loss(self, model: ContrastiveModel, batch: dict[str, jax.Array], rngs: nnx.Rngs):
        """Contrastive loss of the batch (dropout on) and the logit scale."""
        za, zb = model(batch["image"], batch["spectrum"], deterministic=False, rngs=rngs)
        return contrastive_objective(model, za, zb, accuracy=False)

    def eval_metrics(self, model: ContrastiveModel, batch: dict[str, jax.Array]):
        """Loss and in-batch retrieval accuracy without dropout."""
        za, zb = model(batch["image"], batch["spectrum"])
        loss, metrics = contrastive_objective(model, za, zb)
        return {"loss": loss, **metrics}


class SpecFormerPretrainTask:
    """Masked-modelling pretraining of the SpecFormer spectrum encoder."""

    trainable = nnx.Param

    def __init__(self, cfg: SpecFormerConfig):
        self.cfg = cfg

    def build_model(self, rngs: nnx.Rngs) -> SpecFormer:
        """A freshly initialised :class:`SpecFormer`."""
        return SpecFormer(self.cfg, rngs=rngs)

    def loss(self, model: SpecFormer, batch: dict[str, jax.Array], rngs: nnx.Rngs):
        """Masked-token MSE with a fresh random mask (drawn from the dropout stream)."""
        return masked_modelling_loss(
            model, batch["spectrum"], rngs.dropout(), deterministic=False, rngs=rngs
        )

    def eval_metrics(self, model: SpecFormer, batch: dict[str, jax.Array]):
        """Masked-token MSE with a fixed mask, comparable across evaluations."""
        loss, metrics = masked_modelling_loss(model, batch["spectrum"], jax.random.key(0))
        return {"loss": loss, **metrics}


def embed_records(
    model: ContrastiveModel, records: dict[str, np.ndarray], *, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Unnormalised image and spectrum embeddings of a whole record set, float32 on host."""
    fwd = nnx.jit(lambda m, x, s: m(x, s))
    n = records["image"].shape[0]
    outs: dict[str, list[np.ndarray]] = {"image": [], "spectrum": []}
    for s in range(0, n, batch_size):
        img = jnp.asarray(records["image"][s : s + batch_size])
        spec = jnp.asarray(records["spectrum"][s : s + batch_size])
        za, zb = fwd(model, img, spec)
        outs["image"].append(np.asarray(za))
        outs["spectrum"].append(np.asarray(zb))
    return {k: np.concatenate(v) for k, v in outs.items()}


def save_encoder(path: str, model: nnx.Module, cfg) -> None:
    """Saves ``model``'s parameters (flat ``a/b/c`` keys) and its config JSON to an .npz file."""
    import dataclasses
    import json

    flat = nnx.traversals.flatten_mapping(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    np.savez(
        path,
        __config__=np.asarray(json.dumps(dataclasses.asdict(cfg))),
        **{"/".join(map(str, k)): np.asarray(v) for k, v in flat.items()},
    )


def _read_encoder_npz(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(saved config, flat parameters) of an encoder .npz, never unpickling anything.

    ``allow_pickle=False``: an object array in a downloaded file would be a pickle, i.e. code;
    it is refused, as is anything that is not a readable .npz with a JSON ``__config__``.
    """
    import json
    import os
    import zipfile

    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            if "__config__" not in f.files:
                raise ValueError("no __config__ entry")
            saved = json.loads(str(f["__config__"]))
            flat = {k: f[k] for k in f.files if k != "__config__"}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        # ValueError covers refused object arrays and bad JSON (json.JSONDecodeError).
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not a readable encoder .npz ({msg})") from None
    return saved, flat


def load_encoder(path: str, cfg) -> dict:
    """Parameters saved by :func:`save_encoder`, checked against ``cfg`` (a dataclass).

    Raises:
      FileNotFoundError: no such file.
      ValueError naming the file: not an encoder .npz (object arrays, which would need
        unpickling, are refused), or the first differing config key.
    """
    import dataclasses
    import json

    saved, flat = _read_encoder_npz(path)
    want = json.loads(json.dumps(dataclasses.asdict(cfg)))
    for key in sorted(set(saved) | set(want)):
        if saved.get(key) != want.get(key):
            raise ValueError(
                f"{path}: encoder was saved with {key}={saved.get(key)!r}, "
                f"the model wants {key}={want.get(key)!r}"
            )
    return nnx.traversals.unflatten_mapping({tuple(_keys(k)): v for k, v in flat.items()})


def _keys(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in path.split("/")]
