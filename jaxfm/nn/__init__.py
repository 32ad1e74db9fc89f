"""jaxfm.nn: layers shared by every model (attention, MLP, norms, mixers, embeddings)."""
