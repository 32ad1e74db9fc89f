"""Flash attention (FlashAttention-2) in Pallas and Triton; see ``kernels/README.md``.

Public API, re-exported lazily (importing this package must not import jax, so the raw Triton
kernels can be tested in a venv without it):

* :func:`flash_attention` (``ops``): the op that picks a kernel or falls back to the reference.
* :func:`attention_reference` (``reference``): plain-jnp ground truth and CPU fallback.
* :func:`flash_attention_pallas` (``pallas``), :func:`flash_attention_triton` (``triton``).
* :class:`BlockSizes`, :func:`get_block_sizes` (``tuning``).
"""

import importlib

_EXPORTS = {
    "flash_attention": "ops",
    "fallback_reason": "ops",
    "attention_reference": "reference",
    "flash_attention_pallas": "pallas",
    "flash_attention_triton": "triton",
    "BlockSizes": "tuning",
    "get_block_sizes": "tuning",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
