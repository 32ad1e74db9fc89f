"""Import of released MPP (PyTorch) AViT weights into :class:`jaxfm.models.surrogate.AViT`.

MPP (McCabe et al., arXiv 2310.02994) releases ``state_dict`` checkpoints of its ``AViT``
(``models/avit.py``). This module maps those names and layouts onto our NNX model:

=====================================================  =======================================
MPP name (torch layout)                                 ours (layout)
=====================================================  =======================================
space_bag.weight (q, n), .bias (q)                      fields.kernel (n, q), fields.bias
embed.in_proj.{0,3,6}.weight (O, I, k, k) Conv2d        stem.kernels.{0,1,2} (k, k, I, O)
embed.in_proj.{1,4,7}.weight (RMS instance norm)        stem.norms.{0,1,2}.weight
blocks.i.temporal.norm{1,2}.weight/.bias                blocks.i.time.norm{1,2}.weight/.bias
blocks.i.*.input_head.weight (3D, D, 1, 1), .bias       mixer.{q,k,v}.kernel (D, D), .bias
blocks.i.*.output_head.weight (D, D, 1, 1), .bias       proj.kernel (D, D), .bias
blocks.i.*.{q,k}norm.weight/.bias (LayerNorm, d_h)      mixer.{q,k}_norm.scale/.bias
blocks.i.*.rel_pos_bias.relative_attention_bias.weight  rel_bias.table (32, heads)
blocks.i.temporal.gamma                                 blocks.i.time.ls.gamma
blocks.i.spatial.gamma_att / .gamma_mlp                 blocks.i.space.ls_mix / ls_mlp .gamma
blocks.i.spatial.mlp.fc{1,2}.weight (O, I), .bias       blocks.i.space.mlp.{up,down}.kernel (I, O)
blocks.i.spatial.{norm1,norm2,mlp_norm}.weight          blocks.i.space.{norm1,norm2,mlp_norm}.weight
debed.out_proj.{0,3}.weight (I, O, k, k) ConvTranspose  destem.kernels.{0,1} (k, k, I, O)
debed.out_proj.{1,4}.weight                             destem.norms.{0,1}.weight
debed.out_kernel (q, n, 4, 4), debed.out_bias (n)       destem.out_kernel (4, 4, q, n), out_bias
=====================================================  =======================================

The fused QKV projection lays its 3D output channels out per head as ``(head, [q|k|v], d_h)``
(MPP rearranges ``(he c)`` with c = 3 d_h, then splits c in three); we split it into our
separate q/k/v projections whose outputs are ``(head, d_h)``. The biases of MPP's
``RMSInstanceNorm2d`` are never used by its forward pass and are dropped (checked to exist).
A ``module.`` prefix (DistributedDataParallel) is stripped. A whole training checkpoint
(MPP saves ``{"iters", "epoch", "model_state", "optimizer_state_dict"}``) is unwrapped to its
``model_state`` (or ``state_dict`` / ``model``) by :func:`unwrap_state_dict`.

The converted model keeps MPP's embedding rows (MPP's field ids). Released checkpoints number
their fields differently from jaxfm's registry; :mod:`jaxfm.models.mpp_checkpoint` reorders
the rows (and reads checkpoint files).

The converted model uses MPP's periodic wrap rule (``periodic_wrap="mpp"``) and full-state
output (``delta=False``); MPP's ``bcs[0] = [x, y]`` flags correspond to our
``periodic=(bcs[1], bcs[0])`` (our order is (H, W); MPP's x axis is W).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfm.models.surrogate import AViT, AViTConfig


class ConversionError(ValueError):
    """The state dict does not have the names or shapes of an MPP AViT."""


#: keys under which a training checkpoint holds the model's state dict (MPP: model_state).
STATE_DICT_KEYS = ("model_state", "state_dict", "model")


def unwrap_state_dict(obj, where: str = "state dict") -> Mapping:
    """The model state dict in ``obj``: ``obj[k]`` for the first of :data:`STATE_DICT_KEYS`
    present, or ``obj`` itself when every value is an array (a plain state dict).

    Raises :class:`ConversionError` naming ``where`` and the top-level keys otherwise.
    """
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{where}: expected a dict, got {type(obj).__name__}")
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not _is_array(v)]
    if bad or not obj:
        raise ConversionError(
            f"{where}: not an MPP checkpoint (no {' / '.join(STATE_DICT_KEYS)} dict, and not a "
            f"plain state dict of arrays); top-level keys: {sorted(map(str, obj))[:8]}"
        )
    return obj


def _is_array(v) -> bool:
    return hasattr(v, "detach") or isinstance(v, (np.ndarray, jnp.ndarray))


def _strip(sd: Mapping) -> dict[str, np.ndarray]:
    out = {}
    for k, v in unwrap_state_dict(sd).items():
        if hasattr(v, "detach"):  # torch tensor, without importing torch
            v = v.detach().cpu().float().numpy()
        out[k[len("module.") :] if k.startswith("module.") else k] = np.asarray(v, np.float32)
    return out


def infer_config(state_dict: Mapping, **overrides) -> AViTConfig:
    """The :class:`AViTConfig` of an MPP state dict (dim, heads, depth, vocabulary size)."""
    sd = _strip(state_dict)
    try:
        q, n = sd["space_bag.weight"].shape
        dim = sd["embed.in_proj.6.weight"].shape[0]
        heads = sd["blocks.0.temporal.rel_pos_bias.relative_attention_bias.weight"].shape[1]
        buckets = sd["blocks.0.temporal.rel_pos_bias.relative_attention_bias.weight"].shape[0]
    except KeyError as e:
        raise ConversionError(f"not an MPP AViT state dict: missing key {e.args[0]!r}") from None
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    strides = tuple(sd[f"embed.in_proj.{i}.weight"].shape[-1] for i in (0, 3, 6))
    cfg = AViTConfig(
        dim=dim,
        heads=heads,
        depth=depth,
        n_fields=n,
        patch_strides=strides,
        num_buckets=buckets,
        periodic_wrap="mpp",
        delta=False,
    )
    if q != dim // 4:
        raise ConversionError(f"space_bag.weight has {q} rows, expected dim/4 = {dim // 4}")
    return dataclasses.replace(cfg, **overrides)


def _attention_params(sd, prefix: str, heads: int) -> dict:
    w = sd[f"{prefix}.input_head.weight"]
    d = w.shape[1]
    dh = d // heads
    w = w[:, :, 0, 0].reshape(heads, 3, dh, d)
    b = sd[f"{prefix}.input_head.bias"].reshape(heads, 3, dh)
    out = {}
    for j, name in enumerate("qkv"):
        out[name] = {"kernel": w[:, j].reshape(heads * dh, d).T, "bias": b[:, j].reshape(-1)}
    out["q_norm"] = {"scale": sd[f"{prefix}.qnorm.weight"], "bias": sd[f"{prefix}.qnorm.bias"]}
    out["k_norm"] = {"scale": sd[f"{prefix}.knorm.weight"], "bias": sd[f"{prefix}.knorm.bias"]}
    return out


def _proj(sd, prefix):
    return {
        "kernel": sd[f"{prefix}.output_head.weight"][:, :, 0, 0].T,
        "bias": sd[f"{prefix}.output_head.bias"],
    }


def _table(sd, prefix):
    return {"table": sd[f"{prefix}.rel_pos_bias.relative_attention_bias.weight"]}


def mpp_to_pure_dict(state_dict: Mapping, cfg: AViTConfig) -> tuple[dict, set[str]]:
    """(nested pure dict of our parameters, set of MPP keys that were read)."""
    sd = _strip(state_dict)
    used: set[str] = set()

    class _Tracking(dict):
        def __getitem__(self, k):
            if k not in self:
                raise ConversionError(f"MPP state dict lacks {k!r}")
            used.add(k)
            return dict.__getitem__(self, k)

    sd = _Tracking(sd)
    conv = lambda k: sd[k].transpose(2, 3, 1, 0)  # Conv2d (O, I, kh, kw) -> (kh, kw, I, O)
    convt = lambda k: sd[k].transpose(2, 3, 0, 1)  # ConvT (I, O, kh, kw) -> (kh, kw, I, O)
    p = {
        "fields": {"kernel": sd["space_bag.weight"].T, "bias": sd["space_bag.bias"]},
        "stem": {
            "kernels": {i: conv(f"embed.in_proj.{3 * i}.weight") for i in range(3)},
            "norms": {i: {"weight": sd[f"embed.in_proj.{3 * i + 1}.weight"]} for i in range(3)},
        },
        "destem": {
            "kernels": {i: convt(f"debed.out_proj.{3 * i}.weight") for i in range(2)},
            "norms": {i: {"weight": sd[f"debed.out_proj.{3 * i + 1}.weight"]} for i in range(2)},
            "out_kernel": sd["debed.out_kernel"].transpose(2, 3, 0, 1),
            "out_bias": sd["debed.out_bias"],
        },
        "blocks": {},
    }
    for i in range(cfg.depth):
        t, s = f"blocks.{i}.temporal", f"blocks.{i}.spatial"
        p["blocks"][i] = {
            "time": {
                "norm1": {"weight": sd[f"{t}.norm1.weight"], "bias": sd[f"{t}.norm1.bias"]},
                "norm2": {"weight": sd[f"{t}.norm2.weight"], "bias": sd[f"{t}.norm2.bias"]},
                "mixer": _attention_params(sd, t, cfg.heads),
                "proj": _proj(sd, t),
                "rel_bias": _table(sd, t),
                "ls": {"gamma": sd[f"{t}.gamma"]},
            },
            "space": {
                "norm1": {"weight": sd[f"{s}.norm1.weight"]},
                "norm2": {"weight": sd[f"{s}.norm2.weight"]},
                "mlp_norm": {"weight": sd[f"{s}.mlp_norm.weight"]},
                "mixer": _attention_params(sd, s, cfg.heads),
                "proj": _proj(sd, s),
                "rel_bias": _table(sd, s),
                "ls_mix": {"gamma": sd[f"{s}.gamma_att"]},
                "ls_mlp": {"gamma": sd[f"{s}.gamma_mlp"]},
                "mlp": {
                    "up": {"kernel": sd[f"{s}.mlp.fc1.weight"].T, "bias": sd[f"{s}.mlp.fc1.bias"]},
                    "down": {
                        "kernel": sd[f"{s}.mlp.fc2.weight"].T,
                        "bias": sd[f"{s}.mlp.fc2.bias"],
                    },
                },
            },
        }
    return p, used


def unused_norm_bias_keys(cfg: AViTConfig) -> list[str]:
    """MPP keys that exist but are never used by its forward pass (RMSInstanceNorm2d biases)."""
    keys = [f"embed.in_proj.{3 * i + 1}.bias" for i in range(3)]
    keys += [f"debed.out_proj.{3 * i + 1}.bias" for i in range(2)]
    for i in range(cfg.depth):
        keys += [f"blocks.{i}.spatial.{n}.bias" for n in ("norm1", "norm2", "mlp_norm")]
    return keys


def convert_mpp(state_dict: Mapping, *, rngs: nnx.Rngs | None = None, **overrides) -> AViT:
    """An :class:`AViT` holding the weights of an MPP state dict (numpy or torch tensors), or
    of a whole MPP training checkpoint dict (its ``model_state``). Rows keep MPP's field ids.

    Every key of the state dict must be used or be one of MPP's unused norm biases, and every
    shape must match; otherwise :class:`ConversionError` names the offending key.
    ``overrides`` are :class:`AViTConfig` fields (e.g. ``attn_impl``), not architecture.
    """
    cfg = infer_config(state_dict, **overrides)
    sd = _strip(state_dict)
    model = AViT(cfg, rngs=rngs or nnx.Rngs(0))
    if len(cfg.patch_strides) != 3:
        raise ConversionError("MPP checkpoints have a three-stage hMLP stem")
    pure, used = mpp_to_pure_dict(sd, cfg)
    unused = set(unused_norm_bias_keys(cfg))
    missing = sorted(unused - set(sd))
    extra = sorted(set(sd) - used - unused)
    if missing or extra:
        raise ConversionError(
            f"MPP state dict mismatch: unknown keys {extra[:5]}, missing keys {missing[:5]}"
        )
    state = nnx.state(model, nnx.Param)
    target = nnx.to_pure_dict(state)

    def check(ours, theirs, path):
        if isinstance(ours, dict):
            if set(ours) != set(theirs):
                raise ConversionError(
                    f"parameter group {path}: ours {sorted(ours)} vs converted {sorted(theirs)}"
                )
            return {k: check(ours[k], theirs[k], f"{path}/{k}") for k in ours}
        if tuple(ours.shape) != tuple(theirs.shape):
            raise ConversionError(f"{path}: converted shape {theirs.shape}, model {ours.shape}")
        return jnp.asarray(theirs, jnp.float32)

    nnx.replace_by_pure_dict(state, check(target, pure, "model"))
    nnx.update(model, state)
    return model
