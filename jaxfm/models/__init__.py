"""jaxfm.models: assembled architectures, one family per file."""
