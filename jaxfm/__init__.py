"""jaxfm: JAX/Flax foundation models for scientific data.

Floors (each imports only the floors below it): ``train`` > ``ckpt`` > ``data`` > ``models`` >
``nn`` > ``parallel``; ``kernels`` (top level) depends on jax alone. See README.md.
"""

__version__ = "0.1.0"
