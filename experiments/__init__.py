"""The studies: command-line scripts run from the repository root as ``python -m experiments.NAME
PRESET [--section.option value ...]`` (``--help`` lists the presets and every option).

Each script is thin: its config dataclass, presets and a ``main(cfg)`` calling the library
(``jaxfm.tasks.<family>``); scripts never import each other. Committed results live in
``results/<study>/`` (command.txt, config.json, results.json, report.md, plots); a study
script writes that folder itself (``--results_dir``, see its ``--help``), so rerunning its
command.txt with ``--results_dir results/<study>`` regenerates it.

Engine and surrogate:

* ``quickstart``: Lorenz-63 flow map with a residual MLP, the engine end to end.
* ``surrogate_pretrain``: multi-physics pretraining of the MPP-style AViT.
* ``surrogate_finetune``: fine-tuning on an unseen system (or a control from scratch).
* ``surrogate_rollout``: autoregressive rollout evaluation of a trained surrogate, with plots.
* ``surrogate_transfer``: the transfer study (pretrained vs scratch, FNO, U-Net).
* ``bench_surrogate``: training-step benchmark of the AViT size presets.
* ``backbone_compare``: the surrogate pretraining with each sequence mixer, one table.

Distillation:

* ``distill``: Lorenz-63 student error versus student size.
* ``distill_surrogate``: student AViT error versus student size.

Contrastive:

* ``contrastive_pretrain_spectra``: SpecFormer masked-modelling pretraining on spectra.
* ``contrastive_train``: image/spectrum contrastive alignment, then the full evaluation.
* ``contrastive_eval``: re-evaluation of a trained contrastive run.

Numbers:

* ``xval_study``: xVal vs digit encodings (P10, P1000, FP15) on synthetic numeric tasks.
"""
