"""Training on a researcher's own files through the script entry points: pretrain on a
directory of Well datasets, fine-tune on a PDEBench file plus a file with fields no
checkpoint has (the vocabulary grows), roll out on valid and test; nothing loaded whole.
And the vocabulary growth itself, on the task."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfm.config import cli
from jaxfm.data.pdebench import PDEBenchFile
from jaxfm.data.well import WellFile, write_well
from jaxfm.models.surrogate import avit_config
from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig
from tests.tasks.surrogate.own_files import CFD_NAME, cfd_file, trajs


def _task(n_fields: int) -> SurrogateTask:
    return SurrogateTask(SurrogateTaskConfig(avit=avit_config("smoke", n_fields=n_fields)))


def _meta(n_fields: int) -> dict:
    return {"config": {"model": {"arch": "avit", "avit": {"n_fields": n_fields}}}}


def test_a_smaller_vocabulary_is_restored_as_saved_then_grown():
    grown = _task(14)
    stored = grown.checkpoint_task(_meta(12))
    assert stored.cfg.avit.n_fields == 12
    assert dataclasses.replace(stored.cfg.avit, n_fields=14) == grown.cfg.avit
    assert grown.checkpoint_task(_meta(14)) is None  # same vocabulary: restore as is
    fno = SurrogateTask(SurrogateTaskConfig(arch="fno"))
    assert fno.checkpoint_task(_meta(12)) is None
    with pytest.raises(ValueError, match=r"16 field rows but model\.avit\.n_fields = 14"):
        grown.checkpoint_task(_meta(16))
    model = stored.build_model(nnx.Rngs(0))
    old_in, old_out = model.fields.kernel[...], model.destem.out_kernel[...]
    grown.adapt_model(model)
    assert model.n_fields == 14
    np.testing.assert_array_equal(model.fields.kernel[...][:12], old_in)
    np.testing.assert_array_equal(model.destem.out_kernel[...][..., :12], old_out)
    # the delta head starts new fields at persistence
    assert not np.any(model.destem.out_kernel[...][..., 12:])


def test_init_from_a_smaller_vocabulary_restores_and_grows(tmp_path):
    from jaxfm.ckpt.manager import Checkpointer
    from jaxfm.config import to_dict
    from jaxfm.parallel.mesh import make_mesh
    from jaxfm.parallel.options import ParallelConfig
    from jaxfm.train.loop import _load_params
    from jaxfm.train.options import TrainConfig
    from jaxfm.train.step import Engine

    mesh = make_mesh(ParallelConfig())

    def engine(n_fields):
        return Engine(_task(n_fields), TrainConfig(), None, None, mesh, "dp")

    small = engine(12)
    state = small.init(0)
    ckpt = Checkpointer(str(tmp_path / "pre" / "checkpoints"))
    ckpt.save(1, state, meta={"config": {"model": to_dict(small.task.cfg)}})
    ckpt.close()
    big = engine(13)
    loaded = _load_params(str(tmp_path / "pre"), big)
    before, after = small.model(state), big.model({**big.init(1), **loaded})
    assert after.n_fields == 13
    np.testing.assert_array_equal(after.fields.kernel[...][:12], before.fields.kernel[...])
    np.testing.assert_array_equal(after.stem.kernels[0][...], before.stem.kernels[0][...])


def _main(module, cls, argv):
    return module.main(cli(cls, module.PRESETS, argv))


def _model(workdir):
    from jaxfm.tasks.surrogate.pipeline import load_run_config
    from jaxfm.train import load_model

    cfg = load_run_config(str(workdir))
    return load_model(str(workdir), SurrogateTask(cfg.model), cfg)


@pytest.mark.slow
def test_pretrain_finetune_and_roll_out_on_own_files(tmp_path, monkeypatch, capsys):
    from experiments import surrogate_finetune, surrogate_pretrain, surrogate_rollout
    from jaxfm.data import catalog
    from jaxfm.data.generate import generate_system
    from jaxfm.tasks.surrogate.pipeline import SurrogateExperiment

    def refuse(self, *a, **k):
        raise AssertionError(f"{self.path} loaded whole")

    monkeypatch.setattr(WellFile, "load", refuse)
    monkeypatch.setattr(PDEBenchFile, "load", refuse)
    monkeypatch.setattr(catalog.TrajectorySlice, "load", refuse)
    monkeypatch.setattr(catalog.TrajectoryConcat, "load", refuse)
    root = tmp_path / "data"
    for system in ("shallow_water", "navier_stokes"):  # 5 trajectories: 3 / 1 / 1
        generate_system(system, root, 5, resolution=16, steps=10, progress=False)
    run = [
        "--train.steps",
        "2",
        "--train.eval_every",
        "0",
        "--train.progress",
        "false",
        "--ckpt.every",
        "0",
    ]
    pre = tmp_path / "pre"
    _main(
        surrogate_pretrain,
        SurrogateExperiment,
        ["smoke", "--workdir", str(pre), "--data.paths", str(root), *run],
    )
    out = capsys.readouterr()
    assert "[navier_stokes/train]" not in out.err  # one file per split: nothing to index
    # PDEBench compressible flow (density, pressure: never in pretraining) and a file whose
    # two fields no registry has
    cfd = cfd_file(tmp_path / CFD_NAME, steps=10, grid=16)
    heat = write_well(
        trajs("heat", ("temperature", "salinity"), n=6, steps=10, grid=16), tmp_path / "heat.h5"
    )
    ft = tmp_path / "ft"
    ft_args = ["smoke", "--workdir", str(ft), "--init_from", str(pre)]
    ft_args += ["--data.paths", f"{cfd},{heat}", *run, "--train.lr", "0"]
    with pytest.raises(ValueError, match=r"field 'salinity' \(id 12\).*model\.avit\.n_fields"):
        _main(surrogate_finetune, SurrogateExperiment, ft_args)
    res = _main(surrogate_finetune, SurrogateExperiment, [*ft_args, "--model.avit.n_fields", "13"])
    assert res["status"] == "finished" and np.isfinite(res["eval/nrmse"])
    assert f"parameters from {pre}" in capsys.readouterr().out
    # the pretrained rows came through the growth untouched (lr 0), one row was added
    before, after = _model(pre), _model(ft)
    assert after.n_fields == 13 and before.n_fields == 12
    np.testing.assert_array_equal(after.fields.kernel[...][:12], before.fields.kernel[...])
    np.testing.assert_array_equal(
        after.destem.out_kernel[...][..., :12], before.destem.out_kernel[...]
    )
    from jaxfm.ckpt.manager import read_meta

    meta = read_meta(str(ft))
    assert meta["fields"][-2:] == ["temperature", "salinity"]
    assert meta["systems"] == ["compressible_m1", "heat"]
    # rollouts of the fine-tuned run: valid (as training reported) and test (final scoring)
    for split, key in (("valid", "rollout_eval"), ("test", "rollout_eval_test")):
        res = _main(
            surrogate_rollout,
            surrogate_rollout.RolloutConfig,
            ["default", "--workdir", str(ft), "--rollout.steps", "3", "--rollout.split", split],
        )[key]
        assert set(res) == {"compressible_m1", "heat"}
        assert {r["split"] for r in res.values()} == {split}
        assert all(np.isfinite(r["model"]["nrmse"]["per_step"]).all() for r in res.values())
    # each split its own files: the test scores did not overwrite the valid ones
    for name in ("rollout{}.json", "report{}.md", "rollout{}_heat.png"):
        assert (ft / name.format("")).exists() and (ft / name.format("_test")).exists()
    assert json.load(open(ft / "rollout.json"))["heat"]["split"] == "valid"
    assert jnp.isfinite(after.fields.kernel[...]).all()
