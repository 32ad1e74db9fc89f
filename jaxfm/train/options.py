"""Settings of the training loop and optimiser (the ``train`` section of every experiment)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and loop settings."""

    steps: int = 1000
    """Optimizer steps to train for (the run stops at this step; resuming continues to it)."""
    batch_size: int = 32
    """Global batch size (all devices and processes together), before gradient accumulation
    splits it into micro-batches."""
    seed: int = 0
    """Seed for parameter init, data order and dropout; same seed, same run."""
    lr: float = 1e-3
    """Peak learning rate."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of lr (cosine and linear)."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """Optimizer."""
    b1: float = 0.9
    """Adam beta1 (SGD momentum)."""
    b2: float = 0.999
    """Adam beta2."""
    weight_decay: float = 0.0
    """Decoupled weight decay; applied to matrices only, never to norms, biases or scales."""
    clip_norm: float | None = 1.0
    """Clip gradients to this global L2 norm (None: no clipping)."""
    grad_accum: int = 1
    """Split each batch into this many micro-batches and sum their gradients."""
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the forward/backward computation; parameters and optimizer state stay fp32."""
    log_every: int = 10
    """Write a metrics line every N steps."""
    eval_every: int = 0
    """Evaluate every N steps (0: only at the end)."""
    eval_batches: int = 0
    """Batches per evaluation (0: the whole eval set once)."""
    step_impl: Literal["jit", "shard_map"] = "jit"
    """jit: sharding propagated by XLA from the rule table. shard_map: a per-device (pmap-style)
    step with explicit collectives; data parallel only."""
    crash_on_nan: bool = True
    """Stop with the step and metric named when loss or gradient norm is NaN/Inf."""
    progress: bool = True
    """Print a progress line with ETA (process 0 only)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs tensorboardX)."""
    data_workers: int = 0
    """Grain worker processes for the input pipeline (0: load in the main process)."""
    shuffle: bool = True
    """Shuffle training examples (reseeded each epoch). False keeps the source's order, for
    sources that arrange batches themselves (e.g. one PDE system per micro-batch)."""

    def validate(self) -> list[tuple[str, str]]:
        """(key, problem) of every setting that cannot work, checked before any work starts."""
        bad = []
        for key in ("steps", "batch_size", "grad_accum", "log_every"):
            if getattr(self, key) < 1:
                bad.append((key, f"must be >= 1, got {getattr(self, key)}"))
        for key in ("warmup_steps", "eval_every", "eval_batches", "data_workers"):
            if getattr(self, key) < 0:
                bad.append((key, f"must be >= 0, got {getattr(self, key)}"))
        if not self.lr > 0:
            bad.append(("lr", f"must be > 0, got {self.lr}"))
        if self.weight_decay < 0:
            bad.append(("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        if self.clip_norm is not None and not self.clip_norm > 0:
            bad.append(("clip_norm", f"must be > 0 or None, got {self.clip_norm}"))
        if self.batch_size >= 1 and self.grad_accum >= 1 and self.batch_size % self.grad_accum:
            why = f"{self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            bad.append(("batch_size", why))
        return bad
