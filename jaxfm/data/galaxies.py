"""Synthetic paired galaxies (image + spectrum) in AstroCLIP's record layout.

Design note. Cross-modal learning is only measurable when both modalities are views of the same
hidden object. :func:`sample_latents` draws the physical parameters of a galaxy (redshift,
stellar mass, specific star-formation rate, Sérsic morphology) following the AstroCLIP/PROVABGS
parameter ranges (as listed in ``docs/contrastive.md``); :func:`render_images` and
:func:`render_spectra` turn them into observations with modality-specific nuisances (axis
ratio, orientation and PSF for images; pixel noise for spectra). Shared information: redshift
(apparent size, flux, colour; line positions), mass (flux, size; amplitude), sSFR (colour;
emission lines, 4000 Å break).

Record layout (AstroCLIP, Parker et al. 2024, arXiv 2310.03024, HF builder ``AstroClipDataset``):
``image`` float32 (N, H, W, 3) [g, r, z bands], ``spectrum`` float32 (N, L, 1), ``redshift``
float32 (N,), ``targetid`` int64 (N,), plus the physical properties ``log_mass``, ``log_ssfr``,
``sersic_n``, ``log_re``, ``axis_ratio``, ``angle`` (float32 (N,)) for evaluation.
:func:`read_hdf5` accepts any file with the four AstroCLIP keys (real data included); the
property keys are optional there. This flat layout is jaxfm's own export (:func:`write_hdf5`,
a ``PREFIX_train.h5`` / ``PREFIX_eval.h5`` pair).

AstroCLIP's own export (its ``export_data.py``; the HF builder reads it back) is one file with
groups ``"0"`` .. ``"9"`` (one per source image file), each holding ``images`` float32
(n, 152, 152, 3), ``spectra`` float32 (n, 7781, 1), ``redshifts`` (n,) and ``targetids``
(n,). Its train/test split takes, in every group, the first ``int(0.8 * n)`` rows for
training and the rest for testing (the catalogue was shuffled before export, so this is a
random split). :class:`GalaxyFileSource` reads either layout lazily, one row per access:
a real file holds ~150k pairs, ~39 GiB of images, far more than memory.

Images are returned stretched (asinh(x / sigma_noise) / 3), spectra in flux units (the
SpecFormer tokeniser standardises each spectrum itself).
"""

from __future__ import annotations

import dataclasses
import os

import h5py
import numpy as np

#: keys every AstroCLIP-layout file has.
REQUIRED_KEYS = ("image", "spectrum", "redshift", "targetid")
#: physical properties written by the generator (optional in files read from elsewhere).
PROPERTY_KEYS = ("log_mass", "log_ssfr", "sersic_n", "log_re", "axis_ratio", "angle")

# Rest-frame wavelengths in Å.
EMISSION_LINES = (3727.0, 4861.0, 4959.0, 5007.0, 6563.0, 6584.0)  # [OII], Hb, [OIII]x2, Ha, [NII]
EMISSION_RATIOS = (1.0, 0.35, 0.3, 0.9, 1.0, 0.35)
ABSORPTION_LINES = (3934.0, 3969.0, 4304.0, 5175.0, 5894.0)  # Ca K, Ca H, G band, Mg b, Na D
PSF_SIGMA_PX = (1.2, 1.0, 0.9)  # g, r, z


@dataclasses.dataclass(frozen=True)
class GalaxyConfig:
    """Synthetic galaxy data set and its augmentations."""

    n_train: int = 4096
    """Training pairs (generated when ``path`` is None)."""
    n_eval: int = 1024
    """Held-out pairs (the retrieval gallery)."""
    image_size: int = 32
    """Image side in pixels."""
    spectrum_len: int = 256
    """Spectrum pixels over 3600-9800 Å (7781 mimics DESI)."""
    noise: float = 1.0
    """Noise multiplier for both modalities (0: noiseless smoke variant, 2: harder)."""
    snr: float = 10.0
    """Spectrum continuum signal-to-noise per pixel at noise=1."""
    nuisance: bool = True
    """Random axis ratio and orientation of the images (image-only nuisances)."""
    seed: int = 0
    """Generator seed; the eval split uses seed + 1."""
    path: str | None = None
    """Galaxy data on disk; None: generate. Either AstroCLIP's exported file (groups "0".."9",
    split 80/20 per group as AstroCLIP does) or the prefix of jaxfm's own export (reads
    PATH_train.h5 / PATH_eval.h5). Both are read lazily."""
    eval_max: int = 16384
    """At most this many pairs of each split are held in memory for the evaluation after
    training (k-NN reference set, probes, gallery; evenly spaced rows). Generated data sets
    are smaller; a real AstroCLIP file is not (~150k pairs)."""
    flip_rotate: bool = False
    """Augmentation: random flips and 90-degree rotations of training images."""
    aug_noise: float = 0.0
    """Augmentation: extra Gaussian noise (in stretched image units) on training images."""


def sample_latents(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draws ``n`` galaxies' physical parameters (float64 arrays of shape (n,))."""
    z = rng.uniform(0.02, 0.5, n)
    log_mass = np.clip(rng.normal(10.4, 0.55, n), 8.8, 12.0)
    quiescent = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(log_mass - 10.6) / 0.25))
    eps = rng.normal(size=(3, n))
    log_ssfr = np.where(
        quiescent, -11.8 + 0.3 * eps[0], -9.7 - 0.3 * (log_mass - 10.0) + 0.3 * eps[0]
    )
    sersic_n = np.clip(np.where(quiescent, 4.0, 1.0) + 0.4 * eps[1], 0.6, 6.0)
    log_re = 0.25 * (log_mass - 10.0) + 0.55 + 0.15 * eps[2]
    return {
        "redshift": z,
        "log_mass": log_mass,
        "log_ssfr": log_ssfr,
        "sersic_n": sersic_n,
        "log_re": log_re,
        "axis_ratio": rng.uniform(0.3, 1.0, n),
        "angle": rng.uniform(0.0, np.pi, n),
    }


def _flux(lat: dict[str, np.ndarray]) -> np.ndarray:
    """Apparent brightness ∝ M* / z² (arbitrary units, 1 at log M* = 10.4, z = 0.1)."""
    return 10.0 ** (lat["log_mass"] - 10.4) * (0.1 / lat["redshift"]) ** 2


def render_images(
    lat: dict[str, np.ndarray],
    size: int,
    rng: np.random.Generator,
    *,
    noise: float = 1.0,
    nuisance: bool = True,
) -> np.ndarray:
    """Elliptical Sérsic galaxies in g, r, z, convolved with a Gaussian PSF, plus noise.

    Returns float32 (n, size, size, 3) after the stretch asinh(x / sigma) / 3 with sigma = 1
    the pixel noise (so noise-free pixels of the same flux look the same at any ``noise``).
    """
    n = lat["redshift"].shape[0]
    c = np.arange(size) - (size - 1) / 2.0
    yy, xx = np.meshgrid(c, c, indexing="ij")
    q = lat["axis_ratio"] if nuisance else np.ones(n)
    th = lat["angle"] if nuisance else np.zeros(n)
    cos, sin = np.cos(th)[:, None, None], np.sin(th)[:, None, None]
    xr = cos * xx + sin * yy
    yr = (-sin * xx + cos * yy) / q[:, None, None]
    r_px = 2.0 * 10.0 ** lat["log_re"] / (1.0 + lat["redshift"] / 0.08)  # angular size ~ Re / z
    sn = lat["sersic_n"][:, None, None]
    bn = 2.0 * sn - 1.0 / 3.0
    r = np.sqrt(xr**2 + yr**2) / np.maximum(r_px, 0.3)[:, None, None]
    prof = np.exp(-bn * (r ** (1.0 / sn) - 1.0))
    prof /= prof.sum(axis=(1, 2), keepdims=True)
    # Colour: red for passive galaxies and at higher redshift (bands g=0, r=1, z=2).
    slope = 0.8 * np.tanh(-(lat["log_ssfr"] + 10.8)) + 1.2 * lat["redshift"]
    colour = np.exp(slope[:, None] * (np.arange(3)[None, :] - 1.0))  # (n, 3)
    total = 300.0 * _flux(lat)[:, None] * colour  # (n, 3), in units of the pixel noise
    kx = np.fft.fftfreq(size)
    k2 = kx[:, None] ** 2 + kx[None, :] ** 2
    fprof = np.fft.fft2(np.fft.ifftshift(prof, axes=(1, 2)))
    img = np.empty((n, size, size, 3))
    for b, s in enumerate(PSF_SIGMA_PX):
        psf = np.exp(-2.0 * np.pi**2 * s**2 * k2)  # Fourier transform of a unit Gaussian
        band = np.real(np.fft.fftshift(np.fft.ifft2(fprof * psf), axes=(1, 2)))
        img[..., b] = band * total[:, b, None, None]
    img += noise * rng.normal(size=img.shape)
    return (np.arcsinh(img) / 3.0).astype(np.float32)


def wavelengths(length: int) -> np.ndarray:
    """Observed-frame wavelength grid in Å, 3600-9800, shape (length,)."""
    return np.linspace(3600.0, 9800.0, length)


def render_spectra(
    lat: dict[str, np.ndarray],
    length: int,
    rng: np.random.Generator,
    *,
    noise: float = 1.0,
    snr: float = 10.0,
) -> np.ndarray:
    """Redshifted continuum + 4000 Å break + absorption/emission lines + noise, (n, L, 1)."""
    wave = wavelengths(length)
    z = lat["redshift"][:, None]
    rest = wave[None, :] / (1.0 + z)  # (n, L)
    old = 1.0 / (1.0 + np.exp(2.0 * (lat["log_ssfr"] + 10.8)))[:, None]  # 1 = passive
    alpha = -1.5 + 2.0 * old  # blue power law when star forming
    cont = (rest / 5500.0) ** alpha
    cont *= 1.0 - 0.45 * old / (1.0 + np.exp((rest - 4000.0) / 40.0))  # the 4000 Å break
    # Line widths: at least ~1.2 pixels so lines are resolved on coarse grids.
    sig = np.maximum(8.0, 1.2 * (wave[1] - wave[0])) / (1.0 + z)  # rest-frame Å
    for lam in ABSORPTION_LINES:
        cont *= 1.0 - 0.35 * old * np.exp(-0.5 * ((rest - lam) / sig) ** 2)
    ew = 2.0 * 10.0 ** (0.8 * (np.clip(lat["log_ssfr"], -12.5, -8.5) + 10.0))[:, None]
    for lam, ratio in zip(EMISSION_LINES, EMISSION_RATIOS):
        cont += ew * ratio * np.exp(-0.5 * ((rest - lam) / sig) ** 2)
    amp = _flux(lat)[:, None]
    flux = amp * cont
    sigma = noise * amp * np.mean(cont, axis=1, keepdims=True) / snr
    flux += sigma * rng.normal(size=flux.shape)
    return flux[..., None].astype(np.float32)


def render(
    lat: dict[str, np.ndarray], cfg: GalaxyConfig, rng: np.random.Generator, targetid: np.ndarray
) -> dict[str, np.ndarray]:
    """Records in AstroCLIP layout for the given latents (fresh noise from ``rng``)."""
    out = {
        "image": render_images(lat, cfg.image_size, rng, noise=cfg.noise, nuisance=cfg.nuisance),
        "spectrum": render_spectra(lat, cfg.spectrum_len, rng, noise=cfg.noise, snr=cfg.snr),
        "redshift": lat["redshift"].astype(np.float32),
        "targetid": np.asarray(targetid, np.int64),
    }
    out.update({k: lat[k].astype(np.float32) for k in PROPERTY_KEYS})
    return out


def generate(n: int, cfg: GalaxyConfig, seed: int) -> dict[str, np.ndarray]:
    """``n`` synthetic paired galaxies; target ids are ``seed * 10**8 + index``."""
    rng = np.random.default_rng(seed)
    lat = sample_latents(rng, n)
    return render(lat, cfg, rng, seed * 10**8 + np.arange(n))


def write_hdf5(path: str, records: dict[str, np.ndarray]) -> None:
    """Writes records (AstroCLIP layout) to ``path``, one dataset per key."""
    _validate(records, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in records.items():
            f.create_dataset(k, data=v)


def _validate(records: dict[str, np.ndarray], where: str) -> int:
    missing = [k for k in REQUIRED_KEYS if k not in records]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing}; AstroCLIP layout needs {list(REQUIRED_KEYS)}"
        )
    n = records["redshift"].shape[0]
    img, spec = records["image"], records["spectrum"]
    if img.ndim != 4 or img.shape[-1] != 3:
        raise ValueError(f"{where}: key 'image' has shape {img.shape}; expected (N, H, W, 3)")
    if spec.ndim != 3 or spec.shape[-1] != 1:
        raise ValueError(f"{where}: key 'spectrum' has shape {spec.shape}; expected (N, L, 1)")
    for k, v in records.items():
        if v.shape[0] != n:
            raise ValueError(f"{where}: key {k!r} has {v.shape[0]} rows; 'redshift' has {n}")
    return n


def read_hdf5(path: str, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Reads an AstroCLIP-layout HDF5 file into memory (float32 images/spectra).

    Args:
      path: the file.
      keys: keys to read (default: the required ones plus every property key present).
    Raises:
      FileNotFoundError / ValueError with the file and key named when the layout is wrong.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"galaxy file {path!r} does not exist")
    with h5py.File(path, "r") as f:
        present = set(f.keys())
        if keys is None:
            keys = REQUIRED_KEYS + tuple(k for k in PROPERTY_KEYS if k in present)
        absent = [k for k in keys if k not in present]
        if absent:
            raise ValueError(f"{path}: missing key(s) {absent}; file has {sorted(present)}")
        out = {k: np.asarray(f[k][...]) for k in keys}
    for k in ("image", "spectrum", "redshift"):
        if k in out:
            out[k] = out[k].astype(np.float32)
    if "targetid" in out:
        out["targetid"] = out["targetid"].astype(np.int64)
    _validate(out, path)
    return out


def augment(
    example: dict[str, np.ndarray], rng: np.random.Generator, *, flip_rotate: bool, noise: float
) -> dict[str, np.ndarray]:
    """Random flip + 90-degree rotation and additive noise of one example's (H, W, 3) image."""
    img = example["image"]
    if flip_rotate:
        if rng.uniform() < 0.5:
            img = img[:, ::-1]
        img = np.rot90(img, k=int(rng.integers(4)), axes=(0, 1))
    if noise > 0:
        img = img + noise * rng.normal(size=img.shape).astype(np.float32)
    return {**example, "image": np.ascontiguousarray(img, dtype=np.float32)}


class GalaxySource:
    """Grain-compatible random-access source over in-memory AstroCLIP-layout records.

    ``__getitem__`` returns one example (a dict of numpy arrays, the ``keys`` only: images
    and spectra by default, what a training step needs; ``records`` keeps everything). With
    augmentation on, the random state of example ``i`` is derived from ``(seed, i, epoch)``
    with ``epoch = index // len``, so runs are reproducible and indices ``i + k * len``
    (Grain's multi-epoch keys) get fresh augmentations.
    """

    def __init__(
        self,
        records: dict[str, np.ndarray],
        *,
        flip_rotate: bool = False,
        aug_noise: float = 0.0,
        seed: int = 0,
        name: str = "galaxies",
        keys: tuple[str, ...] = ("image", "spectrum"),
    ):
        self._n = _validate(records, name)
        missing = [k for k in keys if k not in records]
        if missing:
            raise ValueError(
                f"{name}: GalaxySource keys {missing} not in records {sorted(records)}"
            )
        self.records, self.keys = records, keys
        self.flip_rotate, self.aug_noise, self.seed, self.name = flip_rotate, aug_noise, seed, name

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        i, epoch = index % self._n, index // self._n
        ex = {k: self.records[k][i] for k in self.keys}
        if self.flip_rotate or self.aug_noise > 0:
            rng = np.random.default_rng((self.seed, i, epoch))
            ex = augment(ex, rng, flip_rotate=self.flip_rotate, noise=self.aug_noise)
        return ex

    def read(self, index: np.ndarray, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Rows ``index`` of ``keys`` (default: every record key), as :class:`GalaxyFileSource`."""
        keys = tuple(self.records) if keys is None else keys
        return {k: self.records[k][np.asarray(index)] for k in keys}

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(H, W, 3) of the images."""
        return tuple(self.records["image"].shape[1:])

    @property
    def spectrum_len(self) -> int:
        """Pixels per spectrum."""
        return int(self.records["spectrum"].shape[1])

    def __repr__(self) -> str:
        return (
            f"GalaxySource(name={self.name!r}, n={self._n}, keys={self.keys}, "
            f"flip_rotate={self.flip_rotate}, aug_noise={self.aug_noise}, seed={self.seed})"
        )


def load_splits(
    cfg: GalaxyConfig,
    *,
    limit: int | None = None,
    keys: tuple[str, ...] | None = None,
    drop: tuple[str, ...] = (),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, eval) records in memory: read from ``cfg.path`` or generated from ``cfg.seed``.

    Args:
      cfg: the data config.
      limit: read at most this many (evenly spaced) rows of each split from a file.
      keys: keys to read from a file (default: every key it has).
      drop: keys not to read from a file (``("image",)`` when only spectra are needed: a
        real AstroCLIP file holds ~39 GiB of images).
    """
    if cfg.path is None:
        return generate(cfg.n_train, cfg, cfg.seed), generate(cfg.n_eval, cfg, cfg.seed + 1)
    out = []
    for source in file_sources(cfg):
        wanted = tuple(source.datasets) if keys is None else keys
        out.append(read_rows(source, limit, tuple(k for k in wanted if k not in drop)))
    return out[0], out[1]


def file_sources(
    cfg: GalaxyConfig, keys: tuple[str, ...] = ("image", "spectrum")
) -> tuple[GalaxyFileSource, GalaxyFileSource]:
    """(train, eval) lazy sources of ``cfg.path``: AstroCLIP's file split as AstroCLIP splits it,
    or jaxfm's ``PATH_train.h5`` / ``PATH_eval.h5`` pair."""
    aug = dict(flip_rotate=cfg.flip_rotate, aug_noise=cfg.aug_noise, seed=cfg.seed)
    path = cfg.path
    if os.path.isfile(path):
        layout = detect_layout(path)
        if layout != ASTROCLIP:
            raise GalaxyFileError(
                f"{path}: a single file in jaxfm's flat layout has no train/test split; pass "
                f"the prefix of a PREFIX_train.h5 / PREFIX_eval.h5 pair (write_hdf5) instead"
            )
        return (
            GalaxyFileSource(path, split="train", keys=keys, **aug),
            GalaxyFileSource(path, split="test", keys=keys),
        )
    return (
        GalaxyFileSource(f"{path}_train.h5", keys=keys, **aug),
        GalaxyFileSource(f"{path}_eval.h5", keys=keys),
    )


def make_sources(cfg: GalaxyConfig) -> tuple[GalaxySource | GalaxyFileSource, ...]:
    """(train source with the configured augmentations, eval source without); lazy file
    sources when ``cfg.path`` is set."""
    if cfg.path is not None:
        return file_sources(cfg)
    train, evals = load_splits(cfg)
    return (
        GalaxySource(
            train,
            flip_rotate=cfg.flip_rotate,
            aug_noise=cfg.aug_noise,
            seed=cfg.seed,
            name=f"galaxies-train-{cfg.seed}",
        ),
        GalaxySource(evals, name=f"galaxies-eval-{cfg.seed + 1}"),
    )


def read_rows(
    source: GalaxySource | GalaxyFileSource,
    limit: int | None = None,
    keys: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Records of ``source`` in memory: all rows, or ``limit`` evenly spaced ones (what the
    evaluation after training embeds; an AstroCLIP file does not fit in memory whole)."""
    n = len(source)
    if limit is None or limit >= n:
        index = np.arange(n)
    else:
        index = np.unique(np.linspace(0, n - 1, max(limit, 1)).round().astype(np.int64))
    return source.read(index, keys)


# ----------------------------------------------------------------------------- files on disk

#: layout names returned by :func:`detect_layout`.
ASTROCLIP, FLAT = "astroclip", "flat"
#: groups of AstroCLIP's export (one per Legacy Survey image file), in its read order.
ASTROCLIP_GROUPS = tuple(str(i) for i in range(10))
#: our key -> AstroCLIP's dataset name inside each group.
ASTROCLIP_DATASETS = {
    "image": "images",
    "spectrum": "spectra",
    "redshift": "redshifts",
    "targetid": "targetids",
}
#: fraction of every group AstroCLIP trains on (the first rows; the rest is its test split).
ASTROCLIP_TRAIN_FRACTION = 0.8
SPLITS = ("all", "train", "test")


class GalaxyFileError(ValueError):
    """A galaxy HDF5 file that is missing, unreadable or not in a known layout."""


def astroclip_split_rows(n: int, split: str) -> range:
    """Rows of one AstroCLIP group of ``n`` rows in ``split`` (train: the first int(0.8 n))."""
    cut = int(ASTROCLIP_TRAIN_FRACTION * n)
    return {"all": range(n), "train": range(cut), "test": range(cut, n)}[split]


def _open_checked(path: str) -> h5py.File:
    if not os.path.exists(path):
        raise FileNotFoundError(f"galaxy file {path!r} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise GalaxyFileError(f"{path}: not a readable HDF5 file ({e})") from None


def detect_layout(path: str) -> str:
    """``"astroclip"`` (groups "0".."9") or ``"flat"`` (jaxfm's export); else GalaxyFileError."""
    with _open_checked(path) as f:
        return _layout(f, path)


def _layout(f: h5py.File, path: str) -> str:
    top = sorted(f.keys())
    groups = [g for g in ASTROCLIP_GROUPS if isinstance(f.get(g), h5py.Group)]
    if groups:
        missing = [g for g in ASTROCLIP_GROUPS if g not in groups]
        if missing:
            raise GalaxyFileError(
                f"{path}: AstroCLIP layout needs groups '0'..'9'; missing group {missing[0]!r}"
            )
        return ASTROCLIP
    if any(k in f for k in REQUIRED_KEYS):
        return FLAT
    raise GalaxyFileError(
        f"{path}: neither AstroCLIP's layout (groups '0'..'9' of "
        f"{sorted(ASTROCLIP_DATASETS.values())}) nor jaxfm's ({list(REQUIRED_KEYS)}); "
        f"file has {top}"
    )


def _segments(f: h5py.File, path: str, layout: str, split: str) -> list[tuple[str, range]]:
    """(dataset prefix, rows) of every part of ``split``, each part checked for shape."""
    if layout == FLAT:
        if split != "all":
            raise GalaxyFileError(f"{path}: jaxfm's flat layout has no {split!r} split")
        names = {k: k for k in REQUIRED_KEYS}
        n = _check_part(f, path, "", names)
        return [("", range(n))]
    out = []
    for g in ASTROCLIP_GROUPS:
        n = _check_part(f, path, f"{g}/", ASTROCLIP_DATASETS)
        out.append((f"{g}/", astroclip_split_rows(n, split)))
    return out


def _check_part(f: h5py.File, path: str, prefix: str, names: dict[str, str]) -> int:
    """Rows of one group (or of the file root); shapes checked from metadata, nothing read."""
    shapes = {}
    for key, ds in names.items():
        obj = f.get(prefix + ds)
        if not isinstance(obj, h5py.Dataset):
            have = sorted(f[prefix].keys()) if prefix else sorted(f.keys())
            raise GalaxyFileError(f"{path}: missing dataset {prefix + ds!r} (has {have})")
        shapes[key] = obj.shape
    n = shapes["redshift"][0] if shapes["redshift"] else 0
    for key, shape in shapes.items():
        if not shape or shape[0] != n:
            raise GalaxyFileError(
                f"{path}: dataset {prefix + names[key]!r} has shape {shape}; "
                f"{prefix + names['redshift']!r} has {n} rows"
            )
    if n and (len(shapes["image"]) != 4 or shapes["image"][-1] != 3):
        raise GalaxyFileError(
            f"{path}: dataset {prefix + names['image']!r} has shape {shapes['image']}; "
            f"expected (N, H, W, 3)"
        )
    spec = shapes["spectrum"]
    if n and not (len(spec) == 2 or (len(spec) == 3 and spec[-1] == 1)):
        raise GalaxyFileError(
            f"{path}: dataset {prefix + names['spectrum']!r} has shape {spec}; "
            f"expected (N, L, 1) or (N, L)"
        )
    return n


_DTYPES = {"image": np.float32, "spectrum": np.float32, "redshift": np.float32}


def _as_record(key: str, value: np.ndarray) -> np.ndarray:
    """Our dtypes and shapes (spectra (..., L, 1); AstroCLIP's redshifts may be float64)."""
    value = np.asarray(value)
    if key == "targetid":
        return value.astype(np.int64)
    if key == "spectrum" and value.shape[-1] != 1:
        value = value[..., None]
    return value.astype(_DTYPES.get(key, np.float32))


class GalaxyFileSource:
    """Grain-compatible source over a galaxy HDF5 file in either layout, read row by row.

    Each ``__getitem__`` reads one row of each key; nothing else is read, so a 39 GiB file
    costs memory per batch only. The file is opened on first access in each process and the
    handle is dropped when the source is pickled (Grain workers). Indices past the end wrap
    (``epoch = index // len``, Grain's multi-epoch keys) and draw fresh augmentations, as
    :class:`GalaxySource` does.

    Args:
      path: the file.
      split: ``"all"`` (a flat file), or AstroCLIP's ``"train"`` / ``"test"`` split (an
        AstroCLIP file; ``"all"`` reads every row of it).
      keys: keys each example has (image, spectrum, redshift, targetid; the property keys of
        a flat file written by :func:`write_hdf5`).
      flip_rotate, aug_noise, seed: augmentations as in :class:`GalaxySource`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        split: str = "all",
        keys: tuple[str, ...] = ("image", "spectrum"),
        flip_rotate: bool = False,
        aug_noise: float = 0.0,
        seed: int = 0,
    ):
        self.path = os.fspath(path)
        if split not in SPLITS:
            raise ValueError(f"{self.path}: unknown split {split!r}; choose one of {SPLITS}")
        self.split, self.keys = split, tuple(keys)
        self.flip_rotate, self.aug_noise, self.seed = flip_rotate, aug_noise, seed
        self._file: h5py.File | None = None
        with _open_checked(self.path) as f:
            self.layout = _layout(f, self.path)
            segments = _segments(f, self.path, self.layout, split)
            self.datasets = dict(ASTROCLIP_DATASETS if self.layout == ASTROCLIP else {})
            if self.layout == FLAT:
                self.datasets = {k: k for k in REQUIRED_KEYS + PROPERTY_KEYS if k in f}
            unknown = [k for k in self.keys if k not in self.datasets]
            if unknown:
                raise GalaxyFileError(
                    f"{self.path}: no key {unknown[0]!r} in this {self.layout} file "
                    f"(has {sorted(self.datasets)})"
                )
            first = segments[0][0]
            self.image_shape = tuple(f[first + self.datasets["image"]].shape[1:])
            self.spectrum_len = int(f[first + self.datasets["spectrum"]].shape[1])
        self._prefixes = [p for p, _ in segments]
        self._starts = np.asarray([r.start for _, r in segments], np.int64)
        self._offsets = np.cumsum([0] + [len(r) for _, r in segments])
        self._n = int(self._offsets[-1])
        if self._n == 0:
            raise GalaxyFileError(f"{self.path}: split {split!r} has no rows")

    def __len__(self) -> int:
        return self._n

    def _open(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def locate(self, i: int) -> tuple[str, int]:
        """(group prefix, row inside it) of example ``i`` of this split."""
        part = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return self._prefixes[part], int(self._starts[part] + i - self._offsets[part])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if index < 0:
            raise IndexError(f"index {index} out of range for {self!r}")
        i, epoch = index % self._n, index // self._n
        prefix, row = self.locate(i)
        f = self._open()
        ex = {k: _as_record(k, f[prefix + self.datasets[k]][row]) for k in self.keys}
        if self.flip_rotate or self.aug_noise > 0:
            rng = np.random.default_rng((self.seed, i, epoch))
            ex = augment(ex, rng, flip_rotate=self.flip_rotate, noise=self.aug_noise)
        return ex

    def read(self, index: np.ndarray, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Rows ``index`` (increasing) of ``keys`` (default: all keys of the file), stacked."""
        keys = tuple(self.datasets) if keys is None else keys
        index = np.asarray(index, np.int64)
        parts = np.searchsorted(self._offsets, index, side="right") - 1
        f = self._open()
        out: dict[str, list] = {k: [] for k in keys}
        for part in np.unique(parts):
            rows = self._starts[part] + index[parts == part] - self._offsets[part]
            for k in keys:
                out[k].append(f[self._prefixes[part] + self.datasets[k]][rows])
        return {k: _as_record(k, np.concatenate(v)) for k, v in out.items()}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # never pickle an open handle into a worker
        return state

    def __repr__(self) -> str:
        return (
            f"GalaxyFileSource({self.path}, layout={self.layout}, split={self.split}, "
            f"n={self._n}, keys={self.keys}, flip_rotate={self.flip_rotate}, "
            f"aug_noise={self.aug_noise}, seed={self.seed})"
        )


def rerender(records: dict[str, np.ndarray], cfg: GalaxyConfig, seed: int) -> dict[str, np.ndarray]:
    """A second, independently noisy observation of the same galaxies (same latents/ids).

    Gives in-modal retrieval a ground truth: an image must find the other image of its galaxy.
    Needs the property keys (generator files have them; real files do not).
    """
    missing = [k for k in PROPERTY_KEYS if k not in records]
    if missing:
        raise ValueError(f"rerender needs the generator's property keys; missing {missing}")
    lat = {k: records[k].astype(np.float64) for k in ("redshift",) + PROPERTY_KEYS}
    return render(lat, cfg, np.random.default_rng(seed), records["targetid"])
