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
