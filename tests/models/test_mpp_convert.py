"""MPP checkpoint import: names/shapes of a state dict built here with MPP's published layout,
outputs against an independent float64 NumPy transcription of MPP's forward pass, and (where
torch and the MPP source are importable) against MPP's own PyTorch model."""

import os
import subprocess
import sys

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


MPP_SRC = os.environ.get("JAXFM_MPP_SRC", "")
TORCH_PYTHON = os.environ.get("JAXFM_TORCH_PYTHON", sys.executable)


@pytest.mark.torch
@pytest.mark.skipif(
    not os.path.isfile(os.path.join(MPP_SRC, "models", "avit.py")),
    reason="set JAXFM_MPP_SRC to an MPP checkout (and JAXFM_TORCH_PYTHON to a python with "
    "torch and einops if this one lacks them)",
)
def test_outputs_match_pytorch_mpp(tmp_path):
    # MPP's own model runs in a subprocess (torch may live in another interpreter: CPU torch
    # exists here for Python 3.11 only); its state dict, inputs and outputs come back as .npz.
    out = tmp_path / "mpp.npz"
    script = os.path.join(os.path.dirname(__file__), "mpp_torch_forward.py")
    proc = subprocess.run(
        [TORCH_PYTHON, script, MPP_SRC, str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = np.load(out)
    sd = {k[3:]: ref[k] for k in ref.files if k.startswith("sd/")}
    model = convert_mpp(sd)
    x = jnp.asarray(ref["x"].transpose(1, 0, 3, 4, 2))  # (T, B, C, H, W) -> (B, T, H, W, C)
    for name in ("open", "periodic_w", "periodic_hw"):
        bcs = ref[f"bcs/{name}"]  # MPP: bcs[0] is the W (x) axis, bcs[1] the H (y) axis
        periodic = (bool(bcs[1]), bool(bcs[0]))
        got = np.asarray(model(x, jnp.asarray(ref["labels"]), periodic=periodic))
        want = ref[f"out/{name}"]
        np.testing.assert_allclose(
            got.transpose(0, 3, 1, 2), want, rtol=0, atol=TOL * np.abs(want).max(), err_msg=name
        )
