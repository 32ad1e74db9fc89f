"""Every experiment script keeps the contract: PRESETS with a ``smoke`` preset, ``main(cfg)``,
``--help``; each preset's smoke config trains two steps, saves, and restores.

Scripts that train (their config has a ``train`` section) are run in-process at two steps
with a checkpoint every step, then again at three steps, which must resume from step 2.
A script whose config has ``results_dir`` (a study producer) must also write its study folder
there (tests/study_check.py).
"""

import glob
import importlib
import inspect
import json
import os
import subprocess
import sys

import pytest

from jaxfm.config import override
from tests.study_check import assert_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Module names of the study scripts (``experiments/NAME.py``, run as ``python -m
#: experiments.NAME``).
SCRIPTS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
    if not os.path.basename(p).startswith("_")
)


def _load(name):
    return importlib.import_module(f"experiments.{name}")


# Smoke contracts that cost minutes of compilation on 2 cores, run by `make test-slow`; their
# own logic keeps fast tests in the default suite (tests/experiments/test_<script>.py).
# The surrogate pipeline end to end (pretrain, fine-tune, rollout) is also tested, slow, in
# tests/tasks/surrogate/test_pipeline.py;
# xVal and the spectrum pretraining have their own unit and learning tests.
SLOW_SMOKES = {
    "backbone_compare:smoke",
    "contrastive_pretrain_spectra:smoke",
    "contrastive_train:smoke",
    "surrogate_pretrain:smoke",
    "distill_surrogate:smoke",
    "surrogate_finetune:smoke",
    "xval_study:smoke",
}


#: Files a study folder holds besides the four (plots).
STUDY_EXTRA = {"contrastive_train": ("loss.png", "retrieval_gallery.png", "embedding_pca.png")}


def _training_presets():
    out = []
    for path in SCRIPTS:
        module = _load(path)
        for name, fn in getattr(module, "PRESETS", {}).items():
            cfg = fn()
            if hasattr(cfg, "train") and (
                name == "smoke" or name.endswith("_smoke") or name.startswith("smoke")
            ):
                pid = f"{path}:{name}"
                marks = [pytest.mark.slow] if pid in SLOW_SMOKES else []
                out.append(pytest.param(path, name, id=pid, marks=marks))
    return out


@pytest.mark.parametrize("path", SCRIPTS)
def test_script_has_presets_smoke_main_and_help(path):
    module = _load(path)
    assert "smoke" in module.PRESETS or any("smoke" in n for n in module.PRESETS), path
    assert callable(getattr(module, "main", None))
    out = subprocess.run(
        [sys.executable, "-m", f"experiments.{path}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and "smoke" in out.stdout
    assert f"python -m experiments.{path}" in out.stdout  # the command to copy


def test_scripts_do_not_import_each_other_or_patch_sys_path():
    """Shared study logic lives in the library; scripts are run with ``python -m``."""
    for name in SCRIPTS:
        text = open(os.path.join(ROOT, "experiments", f"{name}.py")).read()
        assert "sys.path" not in text, name
        assert "from experiments" not in text and "import experiments" not in text, name
        main_block = text.split('if __name__ == "__main__":', 1)[1].strip().splitlines()
        assert main_block[0].strip() == "jaxfm.configure_cpu()", name
    for path in glob.glob(os.path.join(ROOT, "notebooks", "*.py")):
        text = open(path).read()
        assert "from experiments" not in text and "import experiments" not in text, path


def test_readme_names_exactly_the_scripts_that_take_the_engine_sections():
    """README: the training scripts accept --init_from and --train/--parallel/--ckpt.*."""
    import re

    from jaxfm.config import ExperimentConfig

    readme = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"<!-- training-scripts -->(.*?)<!-- /training-scripts -->", readme, re.S)
    assert block, "README.md lost its list of training scripts"
    named = set(re.findall(r"`(\w+)`", block.group(1)))
    training = {
        name
        for name in SCRIPTS
        if all(isinstance(fn(), ExperimentConfig) for fn in _load(name).PRESETS.values())
    }
    assert named == training


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
    study = hasattr(module.PRESETS[preset](), "results_dir")
    kw = {}
    if study:
        base["results_dir"] = str(tmp_path / "study")
    if "command" in inspect.signature(module.main).parameters:
        kw["command"] = f"python -m experiments.{path} {preset} --workdir {tmp_path / 'run'}"
    cfg = override(module.PRESETS[preset](), base)
    module.main(cfg, **kw)
    ckpts = os.listdir(tmp_path / "run" / "checkpoints")
    assert "2" in ckpts, ckpts
    assert os.path.exists(tmp_path / "run" / "config.json")
    module.main(override(cfg, {"train.steps": 3}), **kw)
    assert "resumed from step 2" in capsys.readouterr().out
    assert json.load(open(tmp_path / "run" / "results.json"))["step"] == 3
    if study:
        assert_study(
            tmp_path / "study", f"python -m experiments.{path} ", STUDY_EXTRA.get(path, ())
        )
