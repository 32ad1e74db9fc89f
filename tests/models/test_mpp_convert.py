"""MPP checkpoint import: names/shapes of a state dict built here with MPP's published layout,
outputs against an independent float64 NumPy transcription of MPP's forward pass, and (where
torch and the MPP source are importable) against MPP's own PyTorch model; the released
checkpoints' field rows renumbered to jaxfm's registry, whole checkpoint dicts and files."""

import dataclasses
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.data.fields import DEFAULT_FIELDS, default_field_registry
from jaxfm.models.mpp_checkpoint import field_rows, import_mpp_model, load_mpp_state_dict
from jaxfm.models.mpp_convert import ConversionError, convert_mpp, infer_config
from jaxfm.models.surrogate import AViT

from .mpp_reference import mpp_forward, mpp_state_dict
from .torch_zip_writer import write_torch_zip

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


# ----------------------------------------------------------------------------- released layout

COMPRESSIBLE = ("velocity_x", "velocity_y", "density", "pressure")
INCOMPRESSIBLE = ("velocity_x", "velocity_y", "tracer")
# MPP's use_all_fields rows (data_utils/datasets.py): swe 0; incompNS 1-3; diffre2d 4-5; compNS 6-9
MPP_COMPNS_IDS, MPP_INCOMPNS_IDS = [6, 7, 8, 9], [1, 2, 3]


@pytest.fixture(scope="module")
def released():
    """A state dict with the released checkpoints' 12 field rows (n_states = 12)."""
    return mpp_state_dict(np.random.default_rng(5), dim=32, heads=2, depth=1, n_states=12)


def _ours(model, x, ids, periodic):
    out = nnx.jit(lambda m, x, i, p: m(x, i, periodic=p))(
        model,
        jnp.asarray(x.transpose(1, 0, 3, 4, 2), jnp.float32),
        jnp.asarray(ids),
        jnp.asarray(periodic),
    )
    return np.asarray(out, np.float64).transpose(0, 3, 1, 2)


def _sample(channels, seed=3):
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 2.0, channels)[None, None, :, None, None]
    return rng.normal(size=(3, 2, channels, 32, 32)) * scale  # (T, B, C, H, W)


def test_field_rows_map_jaxfm_ids_to_mpp_rows():
    assert field_rows(DEFAULT_FIELDS, "compNS") == {0: 0, 1: 6, 2: 7, 3: 3, 4: 4, 5: 5, 6: 8, 7: 9}
    assert field_rows(DEFAULT_FIELDS, "incompNS") == {
        0: 0,
        1: 1,
        2: 2,
        3: 3,
        4: 4,
        5: 5,
        6: 8,
        7: 9,
    }
    with pytest.raises(ValueError, match="unknown MPP data set 'cns'"):
        field_rows(DEFAULT_FIELDS, "cns")


def test_compressible_sample_with_jaxfm_ids_matches_mpp_with_mpp_ids(released):
    x = _sample(4)
    want = mpp_forward(released, x, np.array(MPP_COMPNS_IDS), np.array([1, 1]), heads=2)
    reg = default_field_registry()
    ids = reg.ids(COMPRESSIBLE)  # jaxfm: 1, 2, 6, 7
    model = import_mpp_model(released, fields=DEFAULT_FIELDS, prefer="compNS")
    assert model.n_fields == 12
    got = _ours(model, x, ids, [True, True])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * np.abs(want).max())
    # rows copied one to one (MPP's ids) would feed density through MPP's x-velocity row
    naive = _ours(convert_mpp(released), x, ids, [True, True])
    assert np.abs(naive - want).max() > 0.1 * np.abs(want).max()


def test_incompressible_sample_takes_incompns_rows(released):
    x = _sample(3, seed=4)
    want = mpp_forward(released, x, np.array(MPP_INCOMPNS_IDS), np.array([0, 0]), heads=2)
    ids = default_field_registry().ids(INCOMPRESSIBLE)
    got = _ours(
        import_mpp_model(released, fields=DEFAULT_FIELDS, prefer="incompNS"), x, ids, [False, False]
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * np.abs(want).max())


def test_fields_mpp_never_saw_keep_a_fresh_initialisation(released):
    model = import_mpp_model(released, fields=DEFAULT_FIELDS, prefer="compNS", seed=7)
    fresh = AViT(model.cfg, rngs=nnx.Rngs(7))
    kernel, out = np.asarray(model.fields.kernel[...]), np.asarray(model.destem.out_kernel[...])
    for j in (8, 9, 10, 11):  # concentration_A, concentration_B, u, the spare row
        np.testing.assert_array_equal(kernel[j], np.asarray(fresh.fields.kernel[...])[j])
        np.testing.assert_array_equal(out[..., j], np.asarray(fresh.destem.out_kernel[...])[..., j])
    np.testing.assert_array_equal(kernel[6], released["space_bag.weight"][:, 8])  # density


def test_whole_checkpoint_dicts_are_unwrapped_or_refused(released):
    ckpt = {
        "iters": 2000,
        "epoch": 1,
        "model_state": {f"module.{k}": v for k, v in released.items()},
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1.0}]},
    }
    model = convert_mpp(ckpt)  # before: TypeError from np.asarray on the optimizer dict
    np.testing.assert_array_equal(
        np.asarray(model.fields.kernel[...]), released["space_bag.weight"].T
    )
    with pytest.raises(ConversionError, match=r"not an MPP checkpoint.*\['epoch', 'weights'\]"):
        convert_mpp({"epoch": 1, "weights": {"a": {"b": 1}}})
    with pytest.raises(ConversionError, match="expected a dict, got list"):
        infer_config([1, 2])


def test_checkpoint_files_load_with_prefixes_stripped(released, tmp_path):
    path = tmp_path / "ckpt.tar"
    write_torch_zip(
        path,
        {"iters": 1, "epoch": 1, "model_state": {f"module.{k}": v for k, v in released.items()}},
    )
    sd = load_mpp_state_dict(path)
    assert set(sd) == set(released)
    np.testing.assert_array_equal(sd["debed.out_bias"], released["debed.out_bias"])
    odd = tmp_path / "odd.pt"
    write_torch_zip(odd, {"net": {"w": np.zeros(3, np.float32)}, "step": 4})
    with pytest.raises(ConversionError, match=r"odd\.pt: not an MPP checkpoint.*\['net', 'step'\]"):
        load_mpp_state_dict(odd)


@pytest.mark.slow  # simulates, fine-tunes and rolls out: about a minute on 2 busy cores
def test_import_command_then_finetune_and_rollout(tmp_path, capsys):
    from experiments import mpp_import, surrogate_finetune, surrogate_rollout
    from jaxfm.config import cli, load_json
    from jaxfm.tasks.surrogate.mpp_import import parse_import_args
    from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment
    from jaxfm.tasks.surrogate.task import SurrogateTask
    from jaxfm.train import load_model

    # the smoke presets' patch 8 (strides 2, 2, 2) so the 32x32 smoke data gives 4x4 tokens
    sd = mpp_state_dict(
        np.random.default_rng(9), dim=32, heads=2, depth=1, n_states=12, strides=(2, 2, 2)
    )
    path = tmp_path / "MPP_AViT_smoke.tar"
    write_torch_zip(
        path,
        {
            "iters": 2000,
            "epoch": 1,
            "model_state": {f"module.{k}": v for k, v in sd.items()},
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1.0, "d": 0.5}]},
        },
    )
    cache, imported, tuned = str(tmp_path / "cache"), tmp_path / "imported", tmp_path / "tuned"
    record = mpp_import.main(
        parse_import_args(
            ["smoke", str(path), "--workdir", str(imported), "--data.cache_dir", cache]
        )
    )
    assert record["field_rows"]["density"] == 8 and record["field_rows"]["velocity_x"] == 6
    assert "fine-tune: python -m experiments.surrogate_finetune" in capsys.readouterr().out
    run_cfg = load_json(SurrogateExperiment, str(imported / "config.json"))
    assert run_cfg.model.avit.periodic_wrap == "mpp" and not run_cfg.model.avit.delta
    assert os.listdir(imported / "checkpoints") == ["0"]
    saved = load_model(str(imported), SurrogateTask(run_cfg.model), run_cfg)
    want = import_mpp_model(sd, fields=DEFAULT_FIELDS, prefer="compNS", seed=0)
    np.testing.assert_array_equal(
        np.asarray(saved.fields.kernel[...]), np.asarray(want.fields.kernel[...])
    )
    np.testing.assert_array_equal(
        np.asarray(saved.destem.out_bias[...]), np.asarray(want.destem.out_bias[...])
    )

    # the zero-shot rollout of the imported run, then fine-tuning from it and its rollout
    rollout = surrogate_rollout.RolloutConfig(
        workdir=str(imported), rollout=surrogate_rollout.RolloutOptions(steps=3)
    )
    zero_shot = surrogate_rollout.main(rollout)["rollout_eval"]
    assert np.isfinite(zero_shot["compressible_m1"]["model"]["nrmse"]["per_step"]).all()
    argv = ["smoke", "--init_from", str(imported), "--workdir", str(tuned)]
    argv += ["--data.cache_dir", cache, "--train.steps", "2", "--ckpt.every", "2"]
    argv += ["--train.progress", "false", *record["architecture_flags"]]
    surrogate_finetune.main(cli(SurrogateExperiment, surrogate_finetune.PRESETS, argv))
    assert f"parameters from {imported}" in capsys.readouterr().out
    res = surrogate_rollout.main(dataclasses.replace(rollout, workdir=str(tuned)))
    assert np.isfinite(res["rollout_eval"]["compressible_m1"]["model"]["nrmse"]["per_step"]).all()
