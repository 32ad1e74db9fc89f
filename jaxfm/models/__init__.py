"""jaxfm.models."""
