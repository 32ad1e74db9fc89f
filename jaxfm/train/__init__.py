"""jaxfm.train."""
