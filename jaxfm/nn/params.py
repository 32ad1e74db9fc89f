"""Parameter kinds the training engine treats specially.

:class:`Fp32Param` marks parameters whose value must keep full precision: the engine never
casts them to the bf16 compute dtype and never applies weight decay to them. State-space
parameters are the example (Mamba's A_log, D and dt bias): exp(A * dt) of a bf16-rounded
A_log drifts the state's decay rate, and decaying A_log towards 0 changes the dynamics.
"""

from __future__ import annotations

from flax import nnx


class Fp32Param(nnx.Param):
    """A parameter kept in float32 under mixed precision and excluded from weight decay."""
