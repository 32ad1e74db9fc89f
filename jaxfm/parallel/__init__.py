"""jaxfm.parallel."""
