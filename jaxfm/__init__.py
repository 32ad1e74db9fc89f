"""jaxfm: JAX/Flax foundation models for scientific data.

Floors (each imports only the floors below it): ``train`` > ``ckpt`` > ``data`` > ``models`` >
``nn`` > ``parallel``; ``kernels`` (top level) depends on jax alone. See README.md.

Parameters carry *logical* axis names in their ``out_sharding`` metadata, which
``jaxfm.parallel`` maps to mesh axes with one rule table per strategy. Flax's eager sharding
(which would demand a mesh whenever such a parameter is created) is switched off here, once,
so models can be built, inspected and abstractly initialised anywhere.
"""

from flax import nnx as _nnx

if hasattr(_nnx, "use_eager_sharding"):
    _nnx.use_eager_sharding(False)

__version__ = "0.1.0"
