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

Modules: :mod:`.plan` (the grid and the budget, pure), :mod:`.report` (rows,
summary, table, plot), :mod:`.run` (the images, training and testing a cell,
the grid loop).
"""

from __future__ import annotations

from unet_tf.ablation.plan import (
    Cell,
    Schedule,
    cell_config,
    cell_schedule,
    n_train_images,
    on_off,
    plan_grid,
    total_step_budget,
)
from unet_tf.ablation.report import (
    column_name,
    markdown_table,
    nanstd,
    read_rows,
    row_columns,
    scores_from_metrics,
    summarize,
    write_plot,
    write_reports,
    write_rows,
)
from unet_tf.ablation.run import AblationData, evaluate_cell, resolve_pool, run_ablation, run_cell

__all__ = [
    "AblationData",
    "Cell",
    "Schedule",
    "cell_config",
    "cell_schedule",
    "column_name",
    "evaluate_cell",
    "markdown_table",
    "n_train_images",
    "nanstd",
    "on_off",
    "plan_grid",
    "read_rows",
    "resolve_pool",
    "row_columns",
    "run_ablation",
    "run_cell",
    "scores_from_metrics",
    "summarize",
    "total_step_budget",
    "write_plot",
    "write_reports",
    "write_rows",
]
