"""Data sources of the surrogate runs: every kind of path, the splits, the registries, the
errors, and that nothing is loaded beyond what a window or a rollout reads (no simulation,
no compile: synthetic files)."""

import dataclasses
import pickle

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfm.ckpt.manager import Checkpointer
from jaxfm.config import ExperimentConfig
from jaxfm.data import catalog
from jaxfm.data.catalog import DataPathError, TrajectoryConcat, TrajectorySlice
from jaxfm.data.fields import DEFAULT_FIELDS, DEFAULT_SYSTEMS, FIELD_ALIASES
from jaxfm.data.pdebench import PDEBenchFile
from jaxfm.data.well import WellFile, write_dataset, write_well
from jaxfm.models.surrogate import avit_config
from jaxfm.tasks.surrogate import pipeline, sources
from jaxfm.tasks.surrogate.pipeline import PDEDataConfig, build_data, check_field_slots
from jaxfm.tasks.surrogate.task import SurrogateTaskConfig
from tests.data import pdebench_files
from tests.tasks.surrogate.own_files import CFD_NAME, GRID, MHD, NS, cfd_file, trajs


@pytest.fixture
def corpus(tmp_path):
    """A root of two Well dataset directories (as `make data` writes), 10 trajectories each."""
    root = tmp_path / "corpus"
    write_dataset(trajs("navier_stokes", NS), root)
    write_dataset(trajs("mhd", MHD, bc=("wall", "periodic")), root)
    return root


FIELD_ALIASES_INV = {new: old for old, new in FIELD_ALIASES.items()}


def _counts(system_data):
    return {k: (None if v is None else v.n_traj) for k, v in system_data.splits.items()}


def _cfg(*paths, **kw):
    kw = {"resolution": GRID, "n_steps": 8, "n_train": 3, "n_eval": 1, **kw}
    return PDEDataConfig(paths=tuple(str(p) for p in paths), **kw)


def _resolve(*paths, tmp_path, **kw):
    return sources.resolve_sources(_cfg(*paths, **kw), str(tmp_path / "cache"), progress=False)


# ----------------------------------------------------------------------------- kinds


def test_well_dataset_directory_uses_its_split_folders(corpus, tmp_path):
    (s,) = _resolve(corpus / "mhd", tmp_path=tmp_path)
    assert s.system == "mhd" and s.field_names == MHD and s.bc == ("wall", "periodic")
    assert _counts(s) == {"train": 8, "valid": 1, "test": 1}  # write_dataset's 80/10/10
    assert all(isinstance(t, WellFile) for t in s.splits.values())
    assert "valid" in str(s.split("valid").path) and "test" in str(s.split("test").path)


def test_root_of_datasets_gives_every_dataset(corpus, tmp_path):
    found = _resolve(corpus, tmp_path=tmp_path)
    assert [s.system for s in found] == ["mhd", "navier_stokes"]  # sorted directory names


def test_split_folder_of_many_files_is_joined_lazily(tmp_path):
    root = tmp_path / "ns"
    for i in range(3):
        write_well(trajs("navier_stokes", NS, n=2, seed=i), root / "data" / "train" / f"{i}.hdf5")
    write_well(trajs("navier_stokes", NS, n=2, seed=9), root / "data" / "valid" / "v.hdf5")
    (s,) = _resolve(root, tmp_path=tmp_path)
    assert isinstance(s.train, TrajectoryConcat) and s.train.n_traj == 6
    assert s.splits["test"] is None
    # trajectory 3 is the second of file 1
    np.testing.assert_array_equal(
        s.train.read(3, 2, 4), trajs("navier_stokes", NS, n=2, seed=1).data[1, 2:4]
    )


def test_single_well_file_is_split_by_trajectory(tmp_path):
    path = write_well(trajs("mhd", MHD, n=10), tmp_path / "mhd.hdf5")
    (s,) = _resolve(path, tmp_path=tmp_path)
    assert _counts(s) == {"train": 8, "valid": 1, "test": 1}
    assert isinstance(s.train, TrajectorySlice)
    # valid is trajectory 8 of the file, test trajectory 9 (file order, no shuffling)
    assert s.split("valid").read(0)[0, 0, 0, 0] == 800
    assert s.split("test").read(0)[0, 0, 0, 0] == 900
    np.testing.assert_array_equal(s.split("valid").params["nu"], [8.0])


def test_pdebench_file_is_found_by_content_and_split(tmp_path):
    path = cfd_file(tmp_path / CFD_NAME)
    (s,) = _resolve(path, tmp_path=tmp_path)
    assert s.system == "compressible_m1"
    assert s.field_names == ("velocity_x", "velocity_y", "density", "pressure")
    assert _counts(s) == {"train": 4, "valid": 1, "test": 1}


def test_every_2d_pdebench_layout_is_read_lazily(tmp_path):
    folder = tmp_path / "pdebench"
    folder.mkdir()
    pdebench_files.write_rdb(folder, n_seeds=3)
    pdebench_files.write_diff_react(folder, n_seeds=3)
    pdebench_files.write_ns_incom(folder, n_batch=2)
    cfd_file(folder / CFD_NAME)
    found = {e.system: e for e in catalog.resolve_path(folder, progress=False)}
    kinds = {name: e.splits["train"].base.kind for name, e in found.items()}
    assert kinds == {
        "shallow_water": "rdb",
        "diffusion_reaction": "diff_react",
        "navier_stokes": "ns_incom",
        "compressible_m1": "cfd",
    }
    assert all(isinstance(e.splits["train"].base, PDEBenchFile) for e in found.values())
    assert all(e.kind == "pdebench_file" for e in found.values())
    assert {n: e.splits["test"] is None for n, e in found.items()}["navier_stokes"]  # 2 batches


def test_folder_of_files_gives_one_source_per_file(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    write_well(trajs("mhd", MHD, n=4), folder / "a.hdf5")
    cfd_file(folder / CFD_NAME)
    found = _resolve(folder, tmp_path=tmp_path)
    assert sorted(s.system for s in found) == ["compressible_m1", "mhd"]


def test_simulator_names_mix_with_paths(corpus, tmp_path):
    # a cache file under the simulator's tag stands in for the simulation
    cache = tmp_path / "cache"
    write_well(trajs("shallow_water", ("h", "velocity_x", "velocity_y"), n=4), cache /
               f"shallow_water_r{GRID}_t8_n4_s1234.h5")  # fmt: skip
    found = _resolve(corpus / "mhd", "shallow_water", tmp_path=tmp_path)
    assert [s.system for s in found] == ["mhd", "shallow_water"]
    sim = found[1]
    assert _counts(sim) == {"train": 3, "valid": 1, "test": None}
    with pytest.raises(DataPathError, match="shallow_water .*has no test split"):
        sim.split("test")
    # data.systems is used only when data.paths is empty
    assert sources.source_names(_cfg()) == pipeline.PRETRAIN_SYSTEMS
    assert sources.source_names(_cfg("x", "y")) == ("x", "y")


def test_sources_of_one_system_are_joined(tmp_path):
    a = write_well(trajs("mhd", MHD, n=10), tmp_path / "a.hdf5")
    b = write_well(trajs("mhd", MHD, n=20, seed=1), tmp_path / "b.hdf5")
    (s,) = _resolve(a, b, tmp_path=tmp_path)
    assert _counts(s) == {"train": 8 + 16, "valid": 1 + 2, "test": 1 + 2}
    assert s.origins == [str(a), str(b)]
    c = write_well(trajs("mhd", ("density", "magnetic_x"), n=10), tmp_path / "c.hdf5")
    with pytest.raises(DataPathError, match=r"c\.hdf5.* has field_names .*a\.hdf5"):
        _resolve(a, c, tmp_path=tmp_path)


# ----------------------------------------------------------------------------- errors


def test_missing_path_names_it_and_the_simulators(tmp_path):
    with pytest.raises(DataPathError, match=r"'nowhere/data' is neither .*shallow_water"):
        _resolve("nowhere/data", tmp_path=tmp_path)


def test_unknown_kinds_are_one_line_errors(tmp_path):
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f.create_dataset("stuff", data=np.zeros(3))
    with pytest.raises(DataPathError, match=r"odd\.h5.*PDEBench.*nor is it The Well's layout"):
        _resolve(odd, tmp_path=tmp_path)
    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(DataPathError, match=r"notes\.hdf5: not a readable HDF5 file"):
        _resolve(text, tmp_path=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataPathError, match=r"empty: holds no data"):
        _resolve(empty, tmp_path=tmp_path)
    one = write_well(trajs("mhd", MHD, n=1), tmp_path / "one.hdf5")
    with pytest.raises(DataPathError, match=r"one\.hdf5: 1 trajectory"):
        _resolve(one, tmp_path=tmp_path)
    only_train = tmp_path / "half"
    write_well(trajs("mhd", MHD, n=2), only_train / "data" / "train" / "mhd.hdf5")
    with pytest.raises(DataPathError, match=r"half: no split 'valid' .*have: train"):
        _resolve(only_train, tmp_path=tmp_path)


def test_too_many_channels_other_grids_and_1d_are_refused(tmp_path):
    wide = write_well(trajs("wide", tuple(f"f{i}" for i in range(5)), n=4), tmp_path / "w.h5")
    with pytest.raises(DataPathError, match=r"w\.h5.*5 fields.*data\.pad_fields = 4"):
        _resolve(wide, tmp_path=tmp_path)
    big = write_well(trajs("mhd", MHD, n=4, grid=16), tmp_path / "big.hdf5")
    small = write_well(trajs("navier_stokes", NS, n=4), tmp_path / "small.hdf5")
    with pytest.raises(DataPathError, match=r"small\.hdf5.*\(8, 8\).*big\.hdf5.*\(16, 16\)"):
        _resolve(big, small, tmp_path=tmp_path)
    line = write_well(trajs("adv", ("u",), n=4, bc=("periodic",)), tmp_path / "line.hdf5")
    with pytest.raises(DataPathError, match=r"line\.hdf5.*1-D grid"):
        _resolve(line, tmp_path=tmp_path)
    burgers = pdebench_files.write_burgers(tmp_path)
    with pytest.raises(DataPathError, match=r"burgers .*1D_Burgers.*1-D grid"):
        _resolve(burgers, tmp_path=tmp_path)


def test_too_many_fields_names_the_field_and_the_key(tmp_path):
    path = write_well(trajs("heat", ("temperature", "salinity"), n=4), tmp_path / "heat.hdf5")
    data = build_data(_cfg(path), 8, 0, str(tmp_path / "run"), progress=False)
    assert data.fields.names == DEFAULT_FIELDS + ("temperature", "salinity")
    model = SurrogateTaskConfig(avit=avit_config("smoke"))
    assert model.avit.n_fields == len(DEFAULT_FIELDS) + 1
    with pytest.raises(ValueError, match=r"field 'salinity' \(id 12\).*model\.avit\.n_fields"):
        check_field_slots(model, data.fields)
    grown = dataclasses.replace(model, avit=avit_config("smoke", n_fields=13))
    check_field_slots(grown, data.fields)


# ----------------------------------------------------------------------------- registries


def test_new_names_extend_the_registries_and_the_periodic_table(corpus, tmp_path):
    data = build_data(_cfg(corpus), 8, 0, str(tmp_path / "run"), progress=False)
    assert data.fields.names == DEFAULT_FIELDS + ("magnetic_x", "magnetic_y")
    assert data.systems.names == DEFAULT_SYSTEMS + ("mhd",)
    mhd = data.systems.id("mhd")
    assert data.periodic.shape == (len(DEFAULT_SYSTEMS) + 1, 2)
    assert tuple(data.periodic[mhd]) == (False, True)  # its bc: wall, periodic
    assert tuple(data.periodic[data.systems.id("navier_stokes")]) == (True, True)
    ex = data.eval[0]  # mhd's valid windows come first
    assert list(ex["field_ids"][:3]) == [DEFAULT_FIELDS.index("density"), 11, 12]
    assert int(ex["system"]) == mhd
    assert pipeline.registry_meta(data)["systems"] == ["mhd", "navier_stokes"]


def test_eval_metrics_are_named_by_the_runs_registries(corpus, tmp_path):
    data = build_data(_cfg(corpus), 8, 0, str(tmp_path / "run"), progress=False)
    task = pipeline.surrogate_task(SurrogateTaskConfig(avit=avit_config("smoke")), data)
    ex = data.eval[0]
    rows = {
        "system": np.array([ex["system"]]),
        "field_ids": ex["field_ids"][None],
        "nrmse": np.array([[0.1, 0.2, 0.3, 0.0]]),
    }
    out = task.eval_summary(rows)
    assert out["nrmse/mhd"] == pytest.approx(0.2)
    assert out["nrmse/mhd/magnetic_y"] == pytest.approx(0.3)


def test_saved_registries_are_extended_and_a_renumbered_one_is_refused(tmp_path):
    path = write_well(trajs("heat", ("temperature",), n=4), tmp_path / "heat.hdf5")
    saved = {
        "fields": list(DEFAULT_FIELDS) + ["vorticity"],
        "system_registry": list(DEFAULT_SYSTEMS) + ["vortex"],
    }
    data = build_data(_cfg(path), 8, 0, str(tmp_path / "run"), saved=[saved], progress=False)
    assert data.fields.names == DEFAULT_FIELDS + ("vorticity", "temperature")
    assert data.systems.names == DEFAULT_SYSTEMS + ("vortex", "heat")
    # a field renamed since the save (Gray-Scott's species) keeps its id, no new row
    old_names = [FIELD_ALIASES_INV.get(n, n) for n in DEFAULT_FIELDS]
    assert old_names != list(DEFAULT_FIELDS)
    data = build_data(_cfg(path), 8, 0, "r", saved=[{"fields": old_names}], progress=False)
    assert data.fields.names == DEFAULT_FIELDS + ("temperature",)
    renumbered = {"fields": ["velocity_x", "h"], "checkpoint": "runs/old"}
    with pytest.raises(
        ValueError,
        match=r"^runs/old: field registry .*saved \['velocity_x', 'h'\], current \['h', ",
    ):
        build_data(_cfg(path), 8, 0, str(tmp_path / "run"), saved=[renumbered], progress=False)


def _save_meta(workdir, meta):
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    ckpt.save(1, {"w": jnp.zeros(2)}, meta=meta)
    ckpt.close()


def test_saved_meta_prefers_the_resumed_checkpoint_over_init_from(tmp_path):
    pre, run = tmp_path / "pre", tmp_path / "run"
    _save_meta(pre, {"fields": ["pre"]})
    cfg = ExperimentConfig(workdir=str(run), init_from=str(pre))
    assert pipeline.saved_meta(cfg) == [{"fields": ["pre"], "checkpoint": str(pre)}]
    _save_meta(run, {"fields": ["run"]})
    assert pipeline.saved_meta(cfg) == [{"fields": ["run"], "checkpoint": str(run)}]
    assert pipeline.saved_meta(ExperimentConfig(workdir=str(tmp_path / "new"))) == []


# ----------------------------------------------------------------------------- laziness


def test_nothing_is_loaded_and_rollouts_read_only_their_frames(corpus, tmp_path, monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError(f"{self.path} loaded whole")

    monkeypatch.setattr(WellFile, "load", refuse)
    reads = []
    read = WellFile.read

    def record(self, traj, start=0, stop=None, stride=1):
        reads.append((self.path.parent.name, traj, start, stop))
        return read(self, traj, start, stop, stride)

    monkeypatch.setattr(WellFile, "read", record)
    big = write_well(trajs("mhd", MHD, n=40), tmp_path / "big.hdf5")  # 32 / 4 / 4
    data = build_data(_cfg(big), 8, 0, str(tmp_path / "run"), progress=False)
    # indexing reads metadata; the mixture reads one window per source to check its grid
    assert [r[1:] for r in reads] == [(0, 0, 5)]
    reads.clear()
    data.train[0]
    assert len(reads) == 1 and reads[0][3] - reads[0][2] == 5  # one window: 4 + 1 frames
    reads.clear()
    traj, ids = pipeline._padded_trajectories(data.held_out["mhd"], 4, data.fields, 2, 6)
    assert traj.shape == (2, 6, GRID, GRID, 4) and list(ids[3:]) == [-1]
    # the first two valid trajectories (file trajectories 32, 33), frames 0:6, nothing else
    assert reads == [(tmp_path.name, 32, 0, 6), (tmp_path.name, 33, 0, 6)]
    assert traj[1, 5, 0, 0, 0] == 3305


def test_pdebench_files_are_not_loaded_either(tmp_path, monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError(f"{self.path} loaded whole")

    monkeypatch.setattr(PDEBenchFile, "load", refuse)
    reads = []
    read = PDEBenchFile.read
    monkeypatch.setattr(
        PDEBenchFile,
        "read",
        lambda self, traj, start=0, stop=None, stride=1: (
            reads.append((traj, start, stop)) or read(self, traj, start, stop, stride)
        ),
    )
    data = build_data(_cfg(cfd_file(tmp_path / CFD_NAME, n=20)), 8, 0, str(tmp_path / "r"))
    reads.clear()
    traj, _ = pipeline._padded_trajectories(data.held_out["compressible_m1"], 4, data.fields, 1, 6)
    assert traj.shape == (1, 6, GRID, GRID, 4) and reads == [(16, 0, 6)]  # 16 / 2 / 2


def test_sources_pickle_into_workers_without_open_files(corpus, tmp_path):
    cfd = cfd_file(tmp_path / CFD_NAME)
    heat = write_well(trajs("heat", ("temperature",), n=4), tmp_path / "heat.hdf5")
    data = build_data(_cfg(corpus, cfd, heat), 8, 0, str(tmp_path / "r"), progress=False)
    for i in range(0, len(data.eval), 5):
        data.eval[i]  # every file now has an open handle in this process
    train, ev = pickle.loads(pickle.dumps((data.train, data.eval)))
    for i in range(0, len(data.eval), 5):
        np.testing.assert_array_equal(ev[i]["x"], data.eval[i]["x"])
    np.testing.assert_array_equal(train[3]["y"], data.train[3]["y"])


def test_indexing_many_files_shows_count_and_eta(tmp_path, capsys):
    paths = [write_well(trajs("mhd", MHD, n=2), tmp_path / f"{i}.hdf5") for i in range(3)]
    opened = catalog.open_files(paths, "mhd/train", WellFile, every_s=0.0)
    assert len(opened) == 3
    err = capsys.readouterr().err
    assert "[mhd/train] indexed 1/3 files" in err and "indexed 3/3 files" in err
    assert "ETA" in err


def test_time_strides_add_strided_training_windows_only(tmp_path):
    from jaxfm.data.windows import ConcatWindows

    path = write_well(trajs("heat", ("temperature",), n=10), tmp_path / "heat.hdf5")
    one = build_data(_cfg(path, n_steps_input=2), 8, 0, str(tmp_path / "a"), progress=False)
    two = build_data(
        _cfg(path, n_steps_input=2, time_strides=(1, 2)), 8, 0, str(tmp_path / "b"), progress=False
    )
    (src1,), (src2,) = one.train.sources, two.train.sources
    assert isinstance(src2, ConcatWindows) and [p.stride for p in src2.sources] == [1, 2]
    # stride 1 keeps its windows; stride 2 adds those that fit (2 inputs + target: 5 frames)
    n_traj, n_steps = src1.data.n_traj, src1.data.n_steps
    assert len(src2) == len(src1) + n_traj * (n_steps - 5 + 1)
    assert len(two.eval) == len(one.eval)  # evaluation stays at stride 1
