"""Training-set-size ablation: test Dice against the number of labelled images.

The grid is sizes x augmentation on/off x model(s) x repeats. Repeat ``r`` uses
seed ``base seed + r``: a different subset of images (:func:`unet_tf.data.splits.choose_subset`),
a different validation split and a different initialisation. Augmentation
settings and models share the seed's subset, so they are compared on the same
images. Every cell trains exactly like one run with ``data.train_size`` N and
``train.seed`` S (N labelled images, ``data.val_fraction`` of them for
validation and the choice of ``best.keras``) and is tested on the SAME held-out
images: the dataset's labelled test split, or with ``data.holdout`` K the last K
labelled training images, which are removed from the pool before any subset is
drawn.

The grid is an :class:`unet_tf.config.AblationConfig` (``ablation.train_sizes``,
``ablation.augment``, ``ablation.models``, ``ablation.repeats``,
``ablation.budget``, ``ablation.budget_steps``), passed as it is to
:func:`run_ablation` with the run's :class:`~unet_tf.config.RunConfig`.

Budget (:func:`cell_schedule`, ``ablation.budget``): ``steps`` (default) gives
every cell the same number of optimizer steps, ``epochs`` the fixed-epoch
protocol of the literature (one epoch = one pass over ``patches_per_image x
images`` patches).
Early stopping never cuts a cell short; ``best.keras`` is kept by ``val_dice``.

Output folder::

    ablation.csv           one row per cell (written after each cell, atomically)
    ablation_summary.csv   mean and std over repeats per model / augmentation / size
    ablation.md            the summary as a Markdown table
    ablation.png           mean test Dice against size (log x), std error bars
    ablation.json          the grid's base settings (a rerun must match them)
    cells/<model>-n<size>-aug<on|off>-s<seed>/   the run folder, test/ predictions

Test scores are the per-image ``"mean"`` rows of :mod:`unet_tf.evaluation.semantic`
(every test image weighs the same); ``mean_dice`` is the mean of the
foreground classes' Dice (classes absent from truth and prediction, NaN, are
skipped). Running the same grid into the same folder again skips the cells
that have a row in ``ablation.csv``; a cell interrupted in training resumes
from its last epoch.

With ``scheduler`` (``local:N`` or ``tcp://HOST:8786``) every cell without a row
is a Dask task, one run per worker, in a process of its own; rows, run folders,
reports and resumption are those of the serial grid (:mod:`.tasks`, :mod:`.isolated`).

k-fold cross-validation of one configuration (:func:`unet_tf.ablation.folds.run_folds`,
``train.py --folds K``) is the other experiment of many independent runs here: K
run folders ``fold-1 .. fold-K``, ``folds.csv``, ``folds_summary.json``, serial or on
Dask, resumable, and optionally the ensemble of the K models on the test images.

Modules: :mod:`.plan` (the grid and the budget, pure), :mod:`.report` (rows,
summary, table, plot), :mod:`.run` (the images, training and testing a cell,
the grid loop), :mod:`.folds` (cross-validation), :mod:`.folder` (the settings
file of an experiment folder), :mod:`.tasks` (runs as Dask tasks, one per worker),
:mod:`.isolated` (a run in a process of its own).
"""

from __future__ import annotations

import importlib

# the face is lazy: a Dask worker that only starts runs in processes of their own (.isolated) loads no TensorFlow
_NAMES = {
    "plan": ("Cell", "Schedule", "cell_config", "cell_schedule", "n_train_images", "on_off", "plan_grid",
             "total_step_budget"),
    "report": ("column_name", "markdown_table", "nanstd", "read_rows", "row_columns", "scores_from_metrics",
               "summarize", "write_plot", "write_reports", "write_rows"),
    "run": ("AblationData", "evaluate_cell", "resolve_pool", "run_ablation", "run_cell"),
    "folds": ("run_folds", "split_folds"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
