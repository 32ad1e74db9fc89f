"""Autoregressive PDE surrogates: task, PDE metrics, rollouts, plots and the pretrain pipeline."""
