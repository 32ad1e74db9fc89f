"""jaxfm.nn: layers shared by every model (attention, MLP, norms, mixers, embeddings).

Parameters carry *logical* axis names (``embed``, ``mlp``, ``heads``, ``vocab``, ``expert``)
in their ``out_sharding`` metadata; ``jaxfm.parallel`` maps them to mesh axes with one rule
table per strategy. Flax's eager sharding (which would need a mesh at construction time) is
switched off so models can be built, inspected and abstractly initialised anywhere.
"""

from flax import nnx as _nnx

if hasattr(_nnx, "use_eager_sharding"):
    _nnx.use_eager_sharding(False)
