"""MPP checkpoint import: names/shapes of a state dict built here with MPP's published layout,
outputs against an independent float64 NumPy transcription of MPP's forward pass, and (where
torch and the MPP source are importable) against MPP's own PyTorch model."""

import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.models.mpp_convert import ConversionError, convert_mpp, infer_config

from .mpp_reference import mpp_forward, mpp_state_dict

# float32 model vs float64 reference through RevIN, stem, 1 block and de-stem with O(1)
# weights: observed ~1e-6 relative; 1e-4 of the output scale leaves margin but catches any
# layout error (those give O(1) differences).
TOL = 1e-4


@pytest.fixture(scope="module")
def converted():
    rng = np.random.default_rng(0)
    sd = mpp_state_dict(rng, dim=32, heads=2, depth=1, n_states=5)
    return sd, convert_mpp(sd)


def test_config_is_inferred(converted):
    sd, model = converted
    cfg = model.cfg
    assert (cfg.dim, cfg.heads, cfg.depth, cfg.n_fields, cfg.patch) == (32, 2, 1, 5, 16)
    assert cfg.periodic_wrap == "mpp" and not cfg.delta
    np.testing.assert_array_equal(np.asarray(model.fields.kernel[...]), sd["space_bag.weight"].T)


@pytest.mark.parametrize("bcs", [(0, 0), (1, 0)])
def test_outputs_match_numpy_transcription_of_mpp(converted, bcs):
    sd, model = converted
    rng = np.random.default_rng(1)
    labels = np.array([3, 0, 4])
    # (T, B, C, H, W) in MPP's layout; grid 32 x 64 (2 x 4 tokens) so H and W differ
    x = rng.normal(size=(3, 2, 3, 32, 64)) * np.array([1.0, 0.2, 3.0])[None, None, :, None, None]
    want = mpp_forward(sd, x, labels, np.array(bcs), heads=2)  # (B, C, H, W)
    ours = nnx.jit(lambda m, x, i, p: m(x, i, periodic=p))(
        model,
        jnp.asarray(x.transpose(1, 0, 3, 4, 2), jnp.float32),
        jnp.asarray(labels),
        jnp.asarray([bool(bcs[1]), bool(bcs[0])]),
    )  # ours: (H, W); MPP: [x=W, y=H]
    got = np.asarray(ours, np.float64).transpose(0, 3, 1, 2)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)


def test_bad_state_dicts_raise():
    rng = np.random.default_rng(2)
    sd = mpp_state_dict(rng, dim=32, heads=2, depth=1, n_states=5)
    with pytest.raises(ConversionError, match="unknown keys"):
        convert_mpp({**sd, "blocks.0.spatial.extra": np.zeros(3)})
    bad = dict(sd)
    bad.pop("blocks.0.spatial.mlp_norm.bias")
    with pytest.raises(ConversionError, match="missing keys"):
        convert_mpp(bad)
    bad = dict(sd)
    bad["debed.out_bias"] = np.zeros(7, np.float32)
    with pytest.raises(ConversionError, match="out_bias"):
        convert_mpp(bad)
    with pytest.raises(ConversionError, match="missing key"):
        infer_config({"module.space_bag.weight": np.zeros((8, 5))})


def _have_torch_mpp() -> bool:
    try:
        return (
            importlib.util.find_spec("torch") is not None
            and importlib.util.find_spec("models.avit") is not None
        )
    except ImportError:  # no "models" package at all
        return False


@pytest.mark.torch
@pytest.mark.skipif(
    not _have_torch_mpp(), reason="needs torch and the MPP source tree (models/avit.py) on sys.path"
)
def test_outputs_match_pytorch_mpp():
    import torch
    from models.avit import AViT as TorchAViT  # MPP's own model

    net = TorchAViT(patch_size=(16, 16), embed_dim=32, processor_blocks=1, n_states=5)
    net.eval()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(3)
    for k in sd:  # MPP inits layer-scale at 1e-6: make every block matter
        if "gamma" in k:
            sd[k] = (0.5 + rng.random(sd[k].shape)).astype(np.float32)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    model = convert_mpp(sd)
    x = rng.normal(size=(3, 2, 3, 32, 32)).astype(np.float32)
    labels = [3, 0, 4]
    bcs = torch.tensor([[1, 0]])
    with torch.no_grad():
        want = net(torch.from_numpy(x), [labels], bcs).numpy()
    got = np.asarray(
        model(jnp.asarray(x.transpose(1, 0, 3, 4, 2)), jnp.asarray(labels), periodic=(False, True))
    ).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * np.abs(want).max())
