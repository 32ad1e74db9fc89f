"""Two-view contrastive encoders: task, losses, retrieval, probes, evaluation and plots."""
