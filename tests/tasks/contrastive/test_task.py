"""Engine tasks of the contrastive family: pretrained-encoder hand-off and the task losses."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.contrastive import ContrastiveConfig
from jaxfm.models.specformer import SpecFormerConfig
from jaxfm.models.vit import ViTConfig
from jaxfm.nn.trunk import AttentionConfig, TrunkConfig
from jaxfm.tasks.contrastive.losses import infonce_loss
from jaxfm.tasks.contrastive.task import (
    ContrastiveTask,
    SpecFormerPretrainTask,
    load_encoder,
    save_encoder,
)

TINY = TrunkConfig(depth=2, dim=16, attention=AttentionConfig(heads=2))
SPEC = SpecFormerConfig(
    spectrum_len=64, section=8, stride=4, trunk=TINY, mask_segments=2, mask_len=2
)
CFG = ContrastiveConfig(
    vit=ViTConfig(image_size=8, patch=4, trunk=TINY),
    spectrum=SPEC,
    embed_dim=8,
    head_heads=2,
    head_mlp_ratio=1.0,
)


def test_pretrained_encoder_round_trip(tmp_path):
    pre = SpecFormerPretrainTask(SPEC).build_model(nnx.Rngs(5))
    path = str(tmp_path / "enc.npz")
    save_encoder(path, pre, SPEC)
    params = load_encoder(path, SPEC)
    model = ContrastiveTask(CFG, spectrum_params=params).build_model(nnx.Rngs(0))
    want = nnx.to_flat_state(nnx.state(pre, nnx.Param))
    got = dict(nnx.to_flat_state(nnx.state(model.spectrum_encoder, nnx.Param)))
    assert len(want) == len(got)
    for k, v in want:
        np.testing.assert_array_equal(np.asarray(got[k][...]), np.asarray(v[...]))
    # (pre was initialised from seed 5 and model from seed 0: equality means the hand-off)
    with pytest.raises(ValueError, match=r"enc\.npz.*section"):
        load_encoder(path, dataclasses.replace(SPEC, section=16))


class _TouchMarker:
    """Pickles as a call of os.system that would create ``marker``: unpickling runs it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["payload.npz", "payload.npy"])
def test_encoder_files_with_object_arrays_are_refused_and_never_run(tmp_path, name):
    """Object arrays are pickles: load_encoder must refuse them, not unpickle them."""
    marker = tmp_path / "executed"
    evil = np.array([_TouchMarker(marker)], dtype=object)
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, __config__=np.asarray("{}"), w=evil)
    else:
        np.save(path, evil, allow_pickle=True)
    loaded = np.load(path, allow_pickle=True)  # control: unpickling runs the payload
    if name.endswith(".npz"):
        loaded["w"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError) as err:
        load_encoder(str(path), SPEC)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: not a readable encoder .npz")
    assert "allow_pickle=False" in msg
    assert not marker.exists()


def test_malformed_encoder_files_raise_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_encoder(str(tmp_path / "missing.npz"), SPEC)
    no_config = tmp_path / "plain.npz"
    np.savez(no_config, w=np.ones(3))
    with pytest.raises(ValueError, match=r"plain\.npz: not a readable encoder .npz \(no __con"):
        load_encoder(str(no_config), SPEC)


def test_task_losses():
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.normal(size=(6, 8, 8, 3)), jnp.float32),
        "spectrum": jnp.asarray(rng.lognormal(size=(6, 64, 1)), jnp.float32),
    }
    task = ContrastiveTask(CFG)
    model = task.build_model(nnx.Rngs(0))
    metrics = nnx.jit(lambda m, b: task.eval_metrics(m, b))(model, batch)
    za, zb = nnx.jit(lambda m, b: m(b["image"], b["spectrum"]))(model, batch)
    np.testing.assert_allclose(
        float(metrics["loss"]), float(infonce_loss(za, zb, 1 / 0.07)), rtol=1e-5
    )
    pre = SpecFormerPretrainTask(SPEC)
    m2 = pre.build_model(nnx.Rngs(0))
    loss, met = nnx.jit(lambda m, b: pre.loss(m, b, nnx.Rngs(dropout=1)))(m2, batch)
    assert np.isfinite(float(loss)) and float(met["mask_fraction"]) == pytest.approx(4 / 15)
