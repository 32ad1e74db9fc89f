"""jaxfm.tasks: one folder per model family, holding what the engine does not know.

Each family keeps together its :class:`~jaxfm.train.task.Task` (how a batch becomes a loss and
evaluation metrics), its losses and metrics, its evaluation, its plots, and the study logic
and presets that the thin scripts in ``experiments/`` call (``surrogate.presets``,
``surrogate.transfer``, ``contrastive.experiment``, ``xval.study``, ``regression.quickstart``):

* ``surrogate``: autoregressive PDE surrogates (AViT, FNO, U-Net), rollouts, PDE metrics and
  the multi-system pretrain / fine-tune pipeline.
* ``contrastive``: two-view encoders (image + spectrum), InfoNCE/SigLIP losses, retrieval,
  probes and the evaluation table.
* ``xval``: the xVal number-aware language model's loss, answer scoring and side-by-side runs.
* ``regression``: mean-squared-error regression (the quickstart and the engine's test task).
* ``distill``: a student fitted to a frozen teacher, wrapping any two regression-style tasks.

Adding a model family is one new folder here; the engine (:mod:`jaxfm.train`) never imports
from this package.
"""
