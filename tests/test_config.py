"""The config CLI: presets, overrides, one-line errors with suggestions, --help, JSON."""

import dataclasses
import json
from typing import Literal

import pytest

from jaxfm.config import (
    ConfigError,
    ExperimentConfig,
    cli,
    field_docs,
    from_dict,
    load_json,
    override,
    to_dict,
)


@dataclasses.dataclass(frozen=True)
class ModelCfg:
    """A toy model section."""

    width: int = 8
    """Hidden width."""
    kind: Literal["a", "b"] = "a"
    """Which variant."""
    dims: tuple[int, ...] = (1, 2)
    """Some dims."""
    dropout: float | None = None
    """Optional rate."""


@dataclasses.dataclass(frozen=True)
class Cfg(ExperimentConfig):
    """Toy experiment."""

    model: ModelCfg = dataclasses.field(default_factory=ModelCfg)
    """The model."""


PRESETS = {"base": lambda: Cfg(), "wide": lambda: Cfg(model=ModelCfg(width=64))}


def test_preset_and_overrides_are_typed():
    cfg = cli(
        Cfg,
        PRESETS,
        [
            "wide",
            "--train.steps",
            "7",
            "--model.kind=b",
            "--model.dims",
            "3,4,5",
            "--workdir",
            "/tmp/x",
            "--train.clip_norm",
            "none",
            "--model.dropout",
            "0.1",
            "--train.crash_on_nan",
            "false",
        ],
    )
    assert cfg.model.width == 64 and cfg.model.kind == "b" and cfg.model.dims == (3, 4, 5)
    assert cfg.train.steps == 7 and cfg.workdir == "/tmp/x" and cfg.train.clip_norm is None
    assert cfg.model.dropout == 0.1 and cfg.train.crash_on_nan is False


def test_a_bare_flag_sets_a_bool_field_to_true():
    cfg = cli(Cfg, PRESETS, ["base", "--train.tensorboard", "--train.steps", "3"])
    assert cfg.train.tensorboard is True and cfg.train.steps == 3


def test_home_and_env_vars_are_expanded_in_workdir(monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("RUNS", "/scratch")
    cfg = cli(Cfg, PRESETS, ["base", "--workdir", "~/a", "--init-from", "$RUNS/b"])
    assert cfg.workdir == "/home/me/a" and cfg.init_from == "/scratch/b"


def test_home_and_env_vars_are_expanded_in_every_path_field(monkeypatch):
    from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment
    from jaxfm.tasks.surrogate.presets import PRETRAIN_PRESETS

    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("DATA", "/scratch/well")
    argv = ["smoke", "--data.cache_dir", "~/cache", "--data.paths", "~/a.h5,$DATA/b"]
    cfg = cli(SurrogateExperiment, PRETRAIN_PRESETS, argv)
    assert cfg.data.cache_dir == "/home/me/cache"
    assert cfg.data.paths == ("/home/me/a.h5", "/scratch/well/b")
    assert cfg.train == PRETRAIN_PRESETS["smoke"]().train  # other sections untouched


def test_dashes_and_underscores_are_the_same_key():
    cfg = cli(Cfg, PRESETS, ["base", "--init-from", "/ckpt", "--ckpt.every", "5"])
    assert cfg.init_from == "/ckpt" and cfg.ckpt.every == 5


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["base", "--train.setps", "3"],
            "unknown config key 'train.setps' (did you mean 'train.steps'?)",
        ),
        (["base", "--steps", "3"], "did you mean 'train.steps'?"),
        (["base", "--train.steps", "abc"], "invalid value 'abc' for train.steps (expected int)"),
        (["base", "--train.steps", "2.5"], "invalid value '2.5' for train.steps (expected int)"),
        (["base", "--model.kind", "c"], "invalid value 'c' for model.kind (expected one of a, b)"),
        (["base", "--train", "3"], "train is a config section"),
        (["base", "--train.steps"], "--train.steps needs a value"),
        (["base", "--train.steps", "--model.width", "3"], "--train.steps needs a value"),
        (["base", "--workdir"], "--workdir needs a value"),
        (["base", "--workdir", ""], "workdir is empty"),
        (["bas"], "unknown preset 'bas' (did you mean 'base'?)"),
        ([], "missing PRESET; choose one of: base, wide"),
    ],
)
def test_bad_input_is_one_line_error_naming_the_key(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        cli(Cfg, PRESETS, argv, prog="exp.py")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_help_lists_every_field_with_its_docstring(capsys):
    with pytest.raises(SystemExit) as e:
        cli(Cfg, PRESETS, ["wide", "--help"], prog="exp.py")
    assert e.value.code == 0
    out = capsys.readouterr().out
    for key in ("--workdir", "--train.steps", "--train.seed", "--ckpt.every", "--model.width"):
        assert key in out
    assert "Hidden width." in out and "[64]" in out  # the chosen preset's value
    assert "Optimizer steps to train for" in out


def test_every_field_of_the_shared_sections_has_a_docstring():
    for cls in (
        ExperimentConfig,
        *(
            type(s)
            for s in (
                ExperimentConfig().train,
                ExperimentConfig().parallel,
                ExperimentConfig().ckpt,
            )
        ),
    ):
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without docstring: {missing}"


def test_json_round_trip_and_unknown_key(tmp_path):
    cfg = override(Cfg(), {"model.dims": "7,8", "train.lr": "0.5"})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert load_json(Cfg, str(path)) == cfg
    bad = to_dict(cfg)
    bad["train"]["lrr"] = 1.0
    with pytest.raises(
        ConfigError, match=r"unknown key 'lrr' in config.train \(did you mean 'lr'\?\)"
    ):
        from_dict(Cfg, bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_json(Cfg, str(tmp_path / "missing.json"))
