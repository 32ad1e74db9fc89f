"""jaxfm.ckpt."""
