"""Synthetic galaxy generator, AstroCLIP-layout HDF5 round trip, source and augmentations;
AstroCLIP's exported file (grouped layout, its 80/20 split, lazy reads, errors)."""

import pickle

import h5py
import numpy as np
import pytest

from jaxfm.data.galaxies import (
    GalaxyConfig,
    GalaxyFileError,
    GalaxyFileSource,
    GalaxySource,
    detect_layout,
    generate,
    load_splits,
    make_sources,
    read_hdf5,
    read_rows,
    render_spectra,
    sample_latents,
    wavelengths,
    write_hdf5,
)

from .astroclip_files import write_astroclip_file

CFG = GalaxyConfig(n_train=64, n_eval=32, image_size=16, spectrum_len=128)


def test_layout_shapes_and_determinism():
    r = generate(16, CFG, seed=3)
    assert r["image"].shape == (16, 16, 16, 3) and r["image"].dtype == np.float32
    assert r["spectrum"].shape == (16, 128, 1) and r["spectrum"].dtype == np.float32
    assert r["redshift"].shape == (16,) and r["targetid"].dtype == np.int64
    assert len(set(r["targetid"].tolist())) == 16
    r2 = generate(16, CFG, seed=3)
    for k in r:
        np.testing.assert_array_equal(r[k], r2[k])
    assert not np.allclose(generate(16, CFG, seed=4)["image"], r["image"])


def test_latent_distribution_follows_recipe():
    lat = sample_latents(np.random.default_rng(0), 20000)
    assert 0.02 <= lat["redshift"].min() and lat["redshift"].max() <= 0.5
    assert 8.8 <= lat["log_mass"].min() and lat["log_mass"].max() <= 12.0
    # massive galaxies are mostly quiescent (low sSFR): negative mass-sSFR correlation
    assert np.corrcoef(lat["log_mass"], lat["log_ssfr"])[0, 1] < -0.4
    # quiescent (log sSFR < -11) galaxies are bulge-like (n ~ 4)
    q = lat["log_ssfr"] < -11
    assert lat["sersic_n"][q].mean() > 3 and lat["sersic_n"][~q].mean() < 1.6


def test_spectrum_lines_move_with_redshift():
    """Noise-free H-alpha of a star-forming galaxy sits at 6563 (1 + z) Å."""
    lat = {
        "redshift": np.array([0.1, 0.3]),
        "log_mass": np.array([10.0, 10.0]),
        "log_ssfr": np.array([-9.5, -9.5]),
    }
    spec = render_spectra(lat, 2048, np.random.default_rng(0), noise=0.0)[..., 0]
    wave = wavelengths(2048)
    for i, z in enumerate(lat["redshift"]):
        window = np.abs(wave - 6563 * (1 + z)) < 60
        peak = wave[window][np.argmax(spec[i][window])]
        assert abs(peak - 6563 * (1 + z)) < 8  # within ~3 pixels of 3 Å
    # brightness falls as z^-2 at fixed mass (continuum median ratio (0.3/0.1)^2 = 9)
    ratio = np.median(spec[0]) / np.median(spec[1])
    assert 5 < ratio < 15


def test_image_encodes_size_and_brightness():
    r = generate(2000, GalaxyConfig(image_size=32, noise=0.0, nuisance=False), seed=0)
    flux = np.sinh(3 * r["image"]).sum(axis=(1, 2, 3))
    expected = 10 ** (r["log_mass"] - 10.4) * (0.1 / r["redshift"]) ** 2
    assert np.corrcoef(np.log(flux), np.log(expected))[0, 1] > 0.95


def test_hdf5_round_trip_and_errors(tmp_path):
    r = generate(8, CFG, seed=0)
    path = str(tmp_path / "g_train.h5")
    write_hdf5(path, r)
    back = read_hdf5(path)
    assert set(back) == set(r)
    for k in r:
        np.testing.assert_array_equal(back[k], r[k])
    # a file with only AstroCLIP's four keys (real data) is accepted
    minimal = str(tmp_path / "real.h5")
    with h5py.File(minimal, "w") as f:
        f["image"] = np.zeros((3, 152, 152, 3), np.float32)
        f["spectrum"] = np.zeros((3, 7781, 1), np.float32)
        f["redshift"] = np.zeros(3, np.float32)
        f["targetid"] = np.arange(3)
    assert read_hdf5(minimal)["spectrum"].shape == (3, 7781, 1)
    bad = str(tmp_path / "bad.h5")
    with h5py.File(bad, "w") as f:
        f["image"] = np.zeros((3, 8, 8, 3), np.float32)
        f["redshift"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"bad\.h5.*spectrum"):
        read_hdf5(bad)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        read_hdf5(str(tmp_path / "nope.h5"))
    with pytest.raises(ValueError, match="expected \\(N, H, W, 3\\)"):
        write_hdf5(bad, {**r, "image": r["image"][..., :2]})


def test_source_and_augmentations(tmp_path):
    train, evals = make_sources(CFG)
    assert len(train) == 64 and len(evals) == 32
    assert "galaxies-train" in repr(train)
    ex = evals[5]
    assert ex["image"].shape == (16, 16, 3) and ex["spectrum"].shape == (128, 1)
    # files written then read give the same source content
    write_hdf5(str(tmp_path / "d_train.h5"), train.records)
    write_hdf5(str(tmp_path / "d_eval.h5"), evals.records)
    t2, e2 = make_sources(GalaxyConfig(path=str(tmp_path / "d")))
    assert isinstance(t2, GalaxyFileSource) and t2.layout == "flat" and len(e2) == 32
    np.testing.assert_array_equal(t2[3]["image"], train[3]["image"])
    back = read_rows(e2)
    for k in evals.records:
        np.testing.assert_array_equal(back[k], evals.records[k])

    aug = GalaxySource(train.records, flip_rotate=True, seed=1)
    img, got = train[7]["image"], aug[7]["image"]
    # a flip/rotation is a permutation of the pixels of each band; it is reproducible
    np.testing.assert_array_equal(np.sort(got.ravel()), np.sort(img.ravel()))
    np.testing.assert_array_equal(aug[7]["image"], got)
    views = {aug[7 + e * len(aug)]["image"].tobytes() for e in range(12)}
    assert len(views) > 2  # later epochs draw other orientations
    noisy = GalaxySource(train.records, aug_noise=0.1, seed=0)[7]["image"]
    assert 0.07 < np.std(noisy - img) < 0.13
    assert np.isfinite(noisy).all()


# ----------------------------------------------------------------------------- AstroCLIP files


@pytest.fixture
def astroclip_file(tmp_path):
    path = str(tmp_path / "astroclip_desi.h5")
    return path, write_astroclip_file(path)


def _astroclip_rows(written, split):
    """AstroCLIP's HF builder, transcribed: per group, the first int(0.8 n) rows are train."""
    rows = []
    for g in map(str, range(10)):
        n = len(written[g]["targetids"])
        lo, hi = (0, int(0.8 * n)) if split == "train" else (int(0.8 * n), n)
        rows += [(g, j) for j in range(lo, hi)]
    return rows


def test_astroclip_layout_is_detected(astroclip_file, tmp_path):
    path, _ = astroclip_file
    assert detect_layout(path) == "astroclip"
    flat = str(tmp_path / "flat_train.h5")
    write_hdf5(flat, generate(4, CFG, seed=0))
    assert detect_layout(flat) == "flat"


def test_astroclip_values_and_split_follow_astroclip(astroclip_file):
    path, written = astroclip_file
    for split in ("train", "test"):
        src = GalaxyFileSource(
            path, split=split, keys=("image", "spectrum", "redshift", "targetid")
        )
        rows = _astroclip_rows(written, split)
        assert len(src) == len(rows)
        for i, (g, j) in enumerate(rows):
            ex = src[i]
            np.testing.assert_array_equal(ex["image"], written[g]["images"][j])
            np.testing.assert_array_equal(ex["spectrum"], written[g]["spectra"][j])
            assert ex["redshift"] == np.float32(written[g]["redshifts"][j])
            assert ex["targetid"] == written[g]["targetids"][j]
            assert ex["image"].dtype == np.float32 and ex["targetid"].dtype == np.int64
    train = GalaxyFileSource(path, split="train", keys=("targetid",))
    test = GalaxyFileSource(path, split="test", keys=("targetid",))
    ids_tr = {int(train[i]["targetid"]) for i in range(len(train))}
    ids_te = {int(test[i]["targetid"]) for i in range(len(test))}
    assert not ids_tr & ids_te
    every = {int(t) for g in written.values() for t in g["targetids"]}
    assert ids_tr | ids_te == every
    # sizes (7, 5, 11, 3, 6, 10, 4, 8, 5, 9): int(0.8 n) = 5+4+8+2+4+8+3+6+4+7 train rows
    assert (len(train), len(test)) == (51, 17)


def test_astroclip_config_gives_lazy_picklable_sources(astroclip_file):
    path, written = astroclip_file
    cfg = GalaxyConfig(path=path, image_size=8, spectrum_len=24, flip_rotate=True)
    train, evals = make_sources(cfg)
    assert (len(train), len(evals)) == (51, 17)
    assert "split=train" in repr(train) and "split=test" in repr(evals)
    assert train.image_shape == (8, 8, 3) and train.spectrum_len == 24
    ex = evals[0]  # group "0" has 7 rows: test starts at row int(5.6) = 5
    np.testing.assert_array_equal(ex["image"], written["0"]["images"][5])
    # augmented views are permutations of the stored pixels, reproducible across pickling
    img = train[3]["image"]
    np.testing.assert_array_equal(np.sort(img.ravel()), np.sort(written["0"]["images"][3].ravel()))
    clone = pickle.loads(pickle.dumps(train))
    assert clone._file is None
    np.testing.assert_array_equal(clone[3]["image"], img)
    assert train[3 + len(train)]["image"].shape == (8, 8, 3)  # next epoch wraps
    rec = read_rows(evals, limit=5)
    assert rec["image"].shape == (5, 8, 8, 3) and rec["redshift"].dtype == np.float32
    tr, _ = load_splits(cfg, limit=4, keys=("targetid",))
    assert set(tr) == {"targetid"} and len(tr["targetid"]) == 4
    tr, ev = load_splits(cfg, drop=("image",))
    assert set(tr) == {"spectrum", "redshift", "targetid"} and len(ev["redshift"]) == 17


def test_astroclip_source_reads_only_the_rows_it_serves(astroclip_file, monkeypatch):
    path, _ = astroclip_file
    reads = []
    original = h5py.Dataset.__getitem__

    def counting(self, key):
        out = original(self, key)
        reads.append((self.name, np.size(out)))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    src = GalaxyFileSource(path, split="train")
    assert reads == []  # construction reads metadata only
    src[10]
    assert sorted(name for name, _ in reads) == ["/2/images", "/2/spectra"]
    assert max(size for _, size in reads) == 8 * 8 * 3  # one image, not a group


def test_bad_galaxy_files_raise_one_line_errors(astroclip_file, tmp_path):
    path, _ = astroclip_file
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        GalaxyFileSource(str(tmp_path / "nope.h5"))
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(GalaxyFileError, match="text.h5: not a readable HDF5"):
        GalaxyFileSource(str(text))
    with h5py.File(path, "a") as f:
        del f["3/spectra"]
    with pytest.raises(GalaxyFileError, match=r"astroclip_desi\.h5: missing dataset '3/spectra'"):
        GalaxyFileSource(path, split="train")
    with h5py.File(path, "a") as f:
        del f["7"]
    with pytest.raises(GalaxyFileError, match="missing group '7'"):
        detect_layout(path)
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f["pixels"] = np.zeros(3)
    with pytest.raises(GalaxyFileError, match=r"other\.h5: neither.*\['pixels'\]"):
        make_sources(GalaxyConfig(path=other))
    ragged = str(tmp_path / "ragged.h5")
    write_astroclip_file(ragged)
    with h5py.File(ragged, "a") as f:
        del f["4/redshifts"]
        f["4/redshifts"] = np.zeros(2)
    with pytest.raises(GalaxyFileError, match="'4/images' has shape .*'4/redshifts' has 2 rows"):
        GalaxyFileSource(ragged, split="test")
    flat = str(tmp_path / "flat_train.h5")
    write_hdf5(flat, generate(4, CFG, seed=0))
    with pytest.raises(GalaxyFileError, match="flat_train.h5: a single file in jaxfm's flat"):
        make_sources(GalaxyConfig(path=flat))
    good = str(tmp_path / "good.h5")
    write_astroclip_file(good)
    with pytest.raises(GalaxyFileError, match="no key 'log_mass' in this astroclip file"):
        GalaxyFileSource(good, keys=("log_mass",))
