"""Every experiment script keeps the contract: PRESETS with a ``smoke`` preset, ``main(cfg)``,
``--help``; each preset's smoke config trains two steps, saves, and restores.

Scripts that train (their config has a ``train`` section) are run in-process at two steps
with a checkpoint every step, then again at three steps, which must resume from step 2.
"""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from jaxfm.config import override

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
    if not os.path.basename(p).startswith("_")
)


def _load(path):
    name = "experiments_" + os.path.basename(path)[:-3]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


# Smoke contracts that cost minutes of compilation on 2 cores, run by `make test-slow`; their
# own logic keeps fast tests in the default suite (tests/experiments/test_<script>.py).
# The surrogate pipeline end to end (pretrain, fine-tune, rollout) is also tested, slow, in
# tests/tasks/surrogate/test_pipeline.py;
# xVal and the spectrum pretraining have their own unit and learning tests.
SLOW_SMOKES = {
    "backbone_compare.py:smoke",
    "contrastive_pretrain_spectra.py:smoke",
    "distill_surrogate.py:smoke",
    "surrogate_finetune.py:smoke",
    "xval_study.py:smoke",
}


def _training_presets():
    out = []
    for path in SCRIPTS:
        module = _load(path)
        for name, fn in getattr(module, "PRESETS", {}).items():
            cfg = fn()
            if hasattr(cfg, "train") and (
                name == "smoke" or name.endswith("_smoke") or name.startswith("smoke")
            ):
                pid = f"{os.path.basename(path)}:{name}"
                marks = [pytest.mark.slow] if pid in SLOW_SMOKES else []
                out.append(pytest.param(path, name, id=pid, marks=marks))
    return out


@pytest.mark.parametrize("path", SCRIPTS, ids=[os.path.basename(p) for p in SCRIPTS])
def test_script_has_presets_smoke_main_and_help(path):
    module = _load(path)
    assert "smoke" in module.PRESETS or any("smoke" in n for n in module.PRESETS), path
    assert callable(getattr(module, "main", None))
    out = subprocess.run(
        [sys.executable, path, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and "smoke" in out.stdout


@pytest.mark.parametrize("path, preset", _training_presets())
def test_smoke_preset_trains_saves_and_restores(path, preset, tmp_path, capsys):
    module = _load(path)
    base = {
        "workdir": str(tmp_path / "run"),
        "train.steps": 2,
        "ckpt.every": 1,
        "train.eval_every": 0,
        "train.progress": "false",
    }
    cfg = override(module.PRESETS[preset](), base)
    module.main(cfg)
    ckpts = os.listdir(tmp_path / "run" / "checkpoints")
    assert "2" in ckpts, ckpts
    assert os.path.exists(tmp_path / "run" / "config.json")
    module.main(override(cfg, {"train.steps": 3}))
    assert "resumed from step 2" in capsys.readouterr().out
    assert json.load(open(tmp_path / "run" / "results.json"))["step"] == 3
