"""The contrastive experiment trains and evaluates on a file in AstroCLIP's exported layout."""

import json
import os

import pytest

from jaxfm.config import override
from jaxfm.tasks.contrastive.experiment import smoke, train_and_evaluate
from tests.data.astroclip_files import write_astroclip_file


def _cfg(tmp_path, path, **more):
    return override(
        smoke(),
        {
            "workdir": str(tmp_path / "run"),
            "data.path": path,
            "data.image_size": 8,
            "data.spectrum_len": 24,
            "model.vit.image_size": 8,
            "model.spectrum.spectrum_len": 24,
            "data.eval_max": 12,
            "train.steps": 2,
            "train.batch_size": 8,
            "train.eval_every": 0,
            "train.progress": "false",
            "ckpt.every": 2,
            "eval.knn_k": 4,
            "eval.probes": "false",
            "eval.baselines": "false",
            **more,
        },
    )


@pytest.mark.slow  # compiles both towers and the evaluation: about a minute on 2 busy cores
def test_trains_and_evaluates_on_an_astroclip_file(tmp_path):
    path = str(tmp_path / "astroclip.h5")
    write_astroclip_file(path)
    results = train_and_evaluate(_cfg(tmp_path, path), command="test")
    assert results["final/gallery_size"] == 12  # eval_max pairs of AstroCLIP's 17 test rows
    assert "final/knn_i2s/r2_redshift" in results
    saved = json.load(open(os.path.join(tmp_path, "run", "config.json")))
    assert saved["data"]["path"] == path


def test_mismatched_tower_sizes_name_the_flags(tmp_path):
    path = str(tmp_path / "astroclip.h5")
    write_astroclip_file(path, side=12)
    with pytest.raises(SystemExit, match=r"astroclip\.h5: images are 12 px.*--data.image_size 12"):
        train_and_evaluate(_cfg(tmp_path, path), command="test")
