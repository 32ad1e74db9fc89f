"""Flash attention (see kernels/README.md)."""
