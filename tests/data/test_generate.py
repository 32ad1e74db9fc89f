"""Generator CLI: end to end on a tiny system, splits, progress, reproducibility, --help."""

import numpy as np
import pytest

from jaxfm.data.generate import build_parser, generate_corpus, main, simulate_chunked
from jaxfm.data.well import WellFile, read_well


def test_cli_writes_splits_stats_and_progress(tmp_path, capsys):
    rc = main(
        [
            "diffusion_reaction",
            "--n-traj",
            "5",
            "--resolution",
            "8",
            "--steps",
            "4",
            "--chunk",
            "2",
            "--out",
            str(tmp_path),
            "--param",
            "frame_dt=0.05",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "[diffusion_reaction] 2/5 trajectories" in err and "ETA" in err
    root = tmp_path / "diffusion_reaction"
    counts = {
        s: read_well(root / "data" / s / "diffusion_reaction.hdf5").n_traj
        for s in ("train", "valid", "test")
    }
    assert counts == {"train": 3, "valid": 1, "test": 1}
    wf = WellFile(root / "data/train/diffusion_reaction.hdf5")
    assert wf.n_steps == 4 and wf.spatial_shape == (8, 8) and wf.dt == pytest.approx(0.05)
    assert wf.settings["overrides"]["frame_dt"] == 0.05 and "du" in wf.params
    assert (root / "stats.yaml").is_file()
    assert not list(root.rglob(".*tmp*"))  # no temporary files left behind


def test_chunking_is_reproducible(tmp_path):
    a = simulate_chunked(
        "diffusion_reaction", 5, seed=3, chunk=2, progress=False, resolution=8, n_steps=3
    )
    b = simulate_chunked(
        "diffusion_reaction", 5, seed=3, chunk=2, progress=False, resolution=8, n_steps=3
    )
    np.testing.assert_array_equal(a.data, b.data)
    assert a.n_traj == 5 and len(set(a.constants["seed"])) == 3  # one seed per chunk


def test_corpus_keeps_complete_datasets(tmp_path, capsys):
    kw = dict(systems=("diffusion_reaction",), n_traj=3, resolution=8, steps=3)
    paths = generate_corpus(tmp_path, **kw)
    before = paths["diffusion_reaction"]["train"].stat().st_mtime_ns
    generate_corpus(tmp_path, **kw)
    assert "kept" in capsys.readouterr().err
    assert paths["diffusion_reaction"]["train"].stat().st_mtime_ns == before


def test_help_and_errors(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "shallow_water" in out and "--n-traj" in out and "The Well" in out
    assert main(["nope", "--out", "x"]) == 2
    assert "unknown system 'nope'" in capsys.readouterr().err
    assert main(["diffusion_reaction", "--out", "x", "--param", "bogus=1"]) == 2
    assert "unknown config fields ['bogus']" in capsys.readouterr().err
