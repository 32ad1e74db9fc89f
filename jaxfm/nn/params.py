"""Parameter kinds the training engine treats specially.

:class:`Fp32Param` marks parameters whose value must keep full precision: the engine never
casts them to the bf16 compute dtype and never applies weight decay to them. State-space
parameters are the example (Mamba's A_log, D and dt bias): exp(A * dt) of a bf16-rounded
A_log drifts the state's decay rate, and decaying A_log towards 0 changes the dynamics.
"""

from __future__ import annotations

import functools

from flax import nnx


class Fp32Param(nnx.Param):
    """A parameter kept in float32 under mixed precision and excluded from weight decay."""


#: ``nnx.with_partitioning`` for jaxfm's parameters: logical axis names as ``out_sharding``
#: metadata, mapped to mesh axes by :mod:`jaxfm.parallel`, and ``eager_sharding=False`` so the
#: parameter can be created without a mesh (building, inspecting and abstract init anywhere)
#: whatever the user's global ``nnx.use_eager_sharding`` setting is.
partitioned = functools.partial(nnx.with_partitioning, eager_sharding=False)


def param(value, axes: tuple, *, kind: type[nnx.Param] = nnx.Param) -> nnx.Param:
    """A ``kind`` parameter holding ``value``, with logical axis names ``axes`` as its
    ``out_sharding`` and ``eager_sharding=False`` (see :data:`partitioned`)."""
    return kind(value, eager_sharding=False, out_sharding=axes)
