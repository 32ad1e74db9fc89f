"""Runs MPP's own PyTorch AViT on random weights and inputs; writes everything to an .npz.

    python tests/models/mpp_torch_forward.py MPP_SOURCE_DIR OUT.npz

Imports only numpy, torch and einops (no jax), so it runs under any interpreter that has
torch: ``tests/models/test_mpp_convert.py::test_outputs_match_pytorch_mpp`` calls it in a
subprocess (``JAXFM_TORCH_PYTHON``) and compares jaxfm's converted model with the output.
MPP_SOURCE_DIR is a checkout of github.com/PolymathicAI/multiple_physics_pretraining.

timm is needed by MPP only for ``DropPath``; where timm is missing, an eval-only stand-in is
installed (drop path is the identity in eval mode, the only mode used here).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch

DIM, HEADS, DEPTH, N_STATES, PATCH = 48, 4, 2, 5, 16


def _timm_stand_in() -> None:
    try:
        import timm.layers  # noqa: F401

        return
    except ImportError:
        pass

    class DropPath(torch.nn.Module):
        def __init__(self, p=0.0):
            super().__init__()
            self.p = p

        def forward(self, x):
            if self.training and self.p > 0:
                raise RuntimeError("stand-in DropPath is eval-only")
            return x

    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")
    layers.DropPath = DropPath
    timm.layers = layers
    sys.modules.update({"timm": timm, "timm.layers": layers})


def main(src: str, out: str) -> None:
    sys.path.insert(0, src)
    _timm_stand_in()
    from models.avit import build_avit

    torch.manual_seed(0)
    # The fields of MPP's config/mpp_avit_*.yaml that build_avit reads (Ti: 192, 3, 12).
    params = types.SimpleNamespace(
        block_type="axial",
        time_type="attention",
        space_type="axial_attention",
        bias_type="rel",
        embed_dim=DIM,
        num_heads=HEADS,
        processor_blocks=DEPTH,
        patch_size=[PATCH, PATCH],
        n_states=N_STATES,
        gradient_checkpointing=False,
    )
    net = build_avit(params).eval()
    rng = np.random.default_rng(3)
    sd = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    for k in sd:  # MPP inits layer-scale at 1e-6: make every block matter
        if "gamma" in k:
            sd[k] = (0.5 + rng.random(sd[k].shape)).astype(np.float32)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = rng.normal(size=(3, 2, 3, 32, 48)).astype(np.float32)  # (T, B, C, H, W)
    labels = np.array([3, 0, 4])
    arrays = {}
    for name, bcs in (("open", [[0, 0]]), ("periodic_w", [[1, 0]]), ("periodic_hw", [[1, 1]])):
        with torch.no_grad():
            y = net(torch.from_numpy(x), [torch.from_numpy(labels)], torch.tensor(bcs))
        arrays[f"out/{name}"] = y.numpy()
        arrays[f"bcs/{name}"] = np.asarray(bcs[0])
    np.savez(
        out,
        x=x,
        labels=labels,
        torch_version=np.asarray(torch.__version__),
        **arrays,
        **{f"sd/{k}": v for k, v in sd.items()},
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2])
