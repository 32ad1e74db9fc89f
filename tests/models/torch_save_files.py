"""Run under a Python with torch (``JAXFM_TORCH_PYTHON``): ``python torch_save_files.py OURS
OUT``. Reads OURS (written by ``torch_zip_writer``) with ``torch.load(weights_only=True)`` and
writes its tensors to OUT/ours_loaded.npz; writes OUT/real.pt with ``torch.save`` in MPP's
checkpoint layout (``model_state`` under DDP's ``module.`` prefix, an optimizer state, slices,
transposes and several dtypes) and its values to OUT/real_values.npz."""

import collections
import sys

import numpy as np
import torch


def _flatten(obj, prefix, out):
    if isinstance(obj, torch.Tensor):
        t = obj.float() if obj.dtype == torch.bfloat16 else obj
        out[prefix] = t.numpy()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}/{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}/{i}", out)


def main(ours: str, out: str) -> None:
    loaded = torch.load(ours, weights_only=True)
    flat = {}
    _flatten(loaded, "", flat)
    np.savez(f"{out}/ours_loaded.npz", **flat)

    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    state = collections.OrderedDict(
        [
            ("module.w", torch.randn(3, 4, generator=g)),
            ("module.w_t", base.t()),  # non-contiguous strides
            ("module.row", base[2]),  # offset view into a shared storage
            ("module.cols", base[1:4, 1:3]),
            ("module.f64", torch.randn(2, 2, dtype=torch.float64, generator=g)),
            ("module.f16", torch.randn(5, generator=g).half()),
            ("module.bf16", torch.randn(4, generator=g).bfloat16()),
            ("module.i64", torch.arange(7)),
            ("module.mask", torch.tensor([True, False, True])),
            ("module.scalar", torch.tensor(2.5)),
            ("module.empty", torch.zeros(0, 3)),
        ]
    )
    optim = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(3, 4)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0]}],
    }
    torch.save(
        {"iters": 20, "epoch": 1, "model_state": state, "optimizer_state_dict": optim},
        f"{out}/real.pt",
    )
    values = {}
    _flatten(state, "model_state", values)
    np.savez(f"{out}/real_values.npz", **values)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
