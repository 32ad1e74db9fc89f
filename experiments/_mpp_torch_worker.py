"""Times MPP's own PyTorch AViT (forward, AdamW train step) for ``experiments.bench_surrogate``.

    JAXFM_MPP_SRC=/path/to/mpp python experiments/_mpp_torch_worker.py   # JSON lines on stdin

Imports only numpy, torch and einops (never jax): the benchmark starts it under another
interpreter (``--bench.torch_python``) and keeps it alive, sending one JSON command per line
so that torch and jax steps can take turns on the same machine:

* ``{"cmd": "setup", "dim", "heads", "depth", "n_states", "batch", "t", "fields", "grid",
  "periodic", "threads"}``: builds MPP's AViT (patch 16) and random inputs, runs the first
  train step and the first forward (their times stand in for jax's compile time);
* ``{"cmd": "train", "n": k}`` / ``{"cmd": "fwd", "n": k}``: k timed steps;
* ``{"cmd": "quit"}``.

Each command is answered by one JSON line on stdout (MPP's own prints go to stderr). The
train step mirrors jaxfm's: normalised MSE, gradient clipping at global norm 1.0, AdamW
(lr 1e-4, weight decay 1e-4 as optax's default), float32. Drop path is set to 0 because the
jax step runs deterministically. timm is needed by MPP only for ``DropPath``; where it is
missing a stand-in is installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types

import numpy as np
import torch


def _timm_stand_in() -> None:
    try:
        import timm.layers  # noqa: F401

        return
    except ImportError:
        pass

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = float(drop_prob)

        def forward(self, x):
            if not self.training or self.drop_prob == 0.0:
                return x
            keep = 1.0 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")
    layers.DropPath = DropPath
    timm.layers = layers
    sys.modules.update({"timm": timm, "timm.layers": layers})


def nmse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MPP's normalised MSE over (B, C, H, W): per sample and field, then the mean."""
    mse = ((pred - y) ** 2).mean(dim=(-2, -1))
    return (mse / ((y**2).mean(dim=(-2, -1)) + 1e-7)).mean()


class Bench:
    """One configuration's model, optimizer and inputs."""

    def __init__(self, req: dict):
        from models.avit import build_avit

        torch.set_num_threads(int(req["threads"]))
        torch.manual_seed(0)
        params = types.SimpleNamespace(  # the fields of MPP's config yaml that build_avit reads
            block_type="axial",
            time_type="attention",
            space_type="axial_attention",
            bias_type="rel",
            embed_dim=int(req["dim"]),
            num_heads=int(req["heads"]),
            processor_blocks=int(req["depth"]),
            patch_size=[16, 16],
            n_states=int(req["n_states"]),
            gradient_checkpointing=False,
        )
        self.net = build_avit(params).train()
        for m in self.net.modules():  # timm's DropPath (and the stand-in) read drop_prob
            if hasattr(m, "drop_prob"):
                m.drop_prob = 0.0
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4, weight_decay=1e-4)
        b, t, c, g = (int(req[k]) for k in ("batch", "t", "fields", "grid"))
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn((t, b, c, g, g), generator=gen)
        self.y = torch.randn((b, c, g, g), generator=gen)
        self.labels = [torch.arange(c)]
        p = int(bool(req["periodic"]))
        self.bcs = torch.tensor([[p, p]])
        self.params = sum(q.numel() for q in self.net.parameters())

    def train(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = nmse(self.net(self.x, self.labels, self.bcs), self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        return float(loss.detach())

    def fwd(self) -> None:
        with torch.no_grad():
            self.net(self.x, self.labels, self.bcs)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def serve(src: str) -> None:
    """Answers commands from stdin until ``quit`` or end of input."""
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything MPP prints must not break the JSON protocol
    sys.path.insert(0, src)
    _timm_stand_in()
    bench = None
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "quit":
            break
        if cmd == "setup":
            bench = Bench(req)
            out = {
                "first_step_s": _timed(bench.train),
                "first_fwd_s": _timed(bench.fwd),
                "params": bench.params,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "numpy": np.__version__,
            }
        elif cmd == "train":
            times, losses = [], []
            for _ in range(int(req["n"])):
                t = time.perf_counter()
                losses.append(bench.train())
                times.append(time.perf_counter() - t)
            out = {"times": times, "loss": losses[-1] if losses else None}
        elif cmd == "fwd":
            out = {"times": [_timed(bench.fwd) for _ in range(int(req["n"]))]}
        else:
            out = {"error": f"unknown command {cmd!r}"}
        reply.write(json.dumps(out) + "\n")
        reply.flush()


if __name__ == "__main__":
    serve(os.environ.get("JAXFM_MPP_SRC", ""))
