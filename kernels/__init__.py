"""Fused ops (Pallas, Triton) with their references, tuning tables and benchmarks.

Depends on jax only, never on ``jaxfm``. Nothing is imported eagerly here, so the raw Triton
kernels (``kernels.flash_attention.triton_kernels``) stay importable where jax is absent.
"""
