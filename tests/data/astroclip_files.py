"""Miniature galaxy files written the way AstroCLIP's exporter writes its real one.

AstroCLIP's ``export_data.py`` walks the shuffled cross-matched catalogue once per Legacy
Survey image file ``i`` in 0..9, collects per-object Python lists and writes group ``str(i)``
with ``create_dataset(name, data=list)``: ``images`` from ``np.array(raw).T.astype("float32")``
of a (3, H, W) cut-out (so (H, W, 3) per object, float32), ``spectra`` from
``np.reshape(flux, [-1, 1]).astype("float32")``, ``redshifts`` and ``targetids`` from the
catalogue columns (float64 and int64 scalars). :func:`write_astroclip_file` follows the same
steps with random data; group sizes differ so the per-group 80/20 split is exercised.
"""

from __future__ import annotations

import h5py
import numpy as np

#: rows per group of the miniature file (AstroCLIP's groups differ in size too).
GROUP_SIZES = (7, 5, 11, 3, 6, 10, 4, 8, 5, 9)


def write_astroclip_file(path, *, side=8, length=24, sizes=GROUP_SIZES, seed=0) -> dict:
    """Writes the file; returns what was written, ``{group: {dataset: array}}``."""
    rng = np.random.default_rng(seed)
    written = {}
    with h5py.File(path, "w") as f:
        next_id = 39627000000000000
        for i in range(10):
            images, spectra, redshifts, targetids = [], [], [], []
            for _ in range(sizes[i]):
                raw = rng.normal(size=(3, side, side))  # the cut-out, bands first
                images.append(np.array(raw).T.astype("float32"))
                flux = rng.normal(size=length)
                spectra.append(np.reshape(flux, [-1, 1]).astype("float32"))
                redshifts.append(np.float64(rng.uniform(0.0, 0.6)))
                targetids.append(np.int64(next_id))
                next_id += int(rng.integers(1, 1000))
            f.create_group(str(i))
            f[str(i)].create_dataset("images", data=images)
            f[str(i)].create_dataset("spectra", data=spectra)
            f[str(i)].create_dataset("redshifts", data=redshifts)
            f[str(i)].create_dataset("targetids", data=targetids)
            written[str(i)] = {
                "images": np.asarray(images),
                "spectra": np.asarray(spectra),
                "redshifts": np.asarray(redshifts),
                "targetids": np.asarray(targetids),
            }
    return written
