"""Synthetic galaxy generator, AstroCLIP-layout HDF5 round trip, source and augmentations."""

import h5py
import numpy as np
import pytest

from jaxfm.data.galaxies import (
    GalaxyConfig,
    GalaxySource,
    generate,
    make_sources,
    read_hdf5,
    render_spectra,
    sample_latents,
    wavelengths,
    write_hdf5,
)

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
    t2, _ = make_sources(GalaxyConfig(path=str(tmp_path / "d")))
    np.testing.assert_array_equal(t2[3]["image"], train[3]["image"])

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
