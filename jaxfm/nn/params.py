"""Parameter kinds the training engine treats specially.

:class:`Fp32Param` marks parameters whose value must keep full precision: the engine never
casts them to the bf16 compute dtype and never applies weight decay to them. State-space
parameters are the example (Mamba's A_log, D and dt bias): exp(A * dt) of a bf16-rounded
A_log drifts the state's decay rate, and decaying A_log towards 0 changes the dynamics.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
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


def cast_floats(tree, dtype, keep=None):
    """Floating leaves to ``dtype``, except where the matching ``keep`` leaf is True.

    The compute-dtype policy: ``cast_floats(params, bfloat16, fp32_mask(params))`` inside the
    loss runs matmuls and attention in bf16 while parameters, gradients and optimizer state
    stay float32 (norm statistics and softmax are computed in float32 by the layers)."""
    cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    if keep is None:
        return jax.tree.map(cast, tree)
    return jax.tree.map(lambda x, k: x if k else cast(x), tree, keep)


def fp32_mask(state: nnx.State) -> dict:
    """Pure dict of bools: True for :class:`jaxfm.nn.params.Fp32Param` leaves."""
    return nnx.to_pure_dict(
        jax.tree.map(
            lambda v: isinstance(v, Fp32Param), state, is_leaf=lambda x: isinstance(x, nnx.Variable)
        )
    )
