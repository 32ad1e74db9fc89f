"""jaxfm.data."""
