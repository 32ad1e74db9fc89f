"""jaxfm.nn."""
