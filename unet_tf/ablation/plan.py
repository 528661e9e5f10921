"""The ablation grid and its budget: which cells run, and how many optimizer steps each gets.

Pure arithmetic on :class:`~unet_tf.config.RunConfig`; nothing here trains or
reads images. Repeat ``r`` of the grid uses seed ``base seed + r``. Budget
``steps`` gives every cell the same number of optimizer steps, ``epochs`` the
fixed-epoch protocol of the literature (one epoch = one pass over
``patches_per_image x images`` patches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from unet_tf.config import BUDGET_NAMES, RunConfig, replace_config, steps_per_pass
from unet_tf.data.splits import split_train_val
from unet_tf.errors import UserInputError

# === The grid ===


@dataclass(frozen=True)
class Cell:
    """One training run of the grid.

    Args:
        model: str, model name (``unet``, ``resunet``).
        size: int, labelled images (training + validation) of the cell.
        augment: bool, augmentation on or off.
        seed: int, seed of the subset, the validation split and the initialisation.
        repeat: int, index of the repeat (``seed - base seed``).
    """

    model: str
    size: int
    augment: bool
    seed: int
    repeat: int

    @property
    def name(self) -> str:
        """Folder name: ``<model>-n<size>-aug<on|off>-s<seed>``."""
        return f"{self.model}-n{self.size}-aug{on_off(self.augment)}-s{self.seed}"

    @property
    def key(self) -> tuple[str, int, str, int]:
        """The row key in ``ablation.csv``: (model, size, "on"/"off", seed)."""
        return (self.model, self.size, on_off(self.augment), self.seed)

    def describe(self) -> str:
        """``unet n=5 aug=on seed=0``: the cell in log lines."""
        return f"{self.model} n={self.size} aug={on_off(self.augment)} seed={self.seed}"


def on_off(flag: bool) -> str:
    """``"on"`` or ``"off"``: how augmentation is written in rows and folder names."""
    return "on" if flag else "off"


def plan_grid(
    sizes: Sequence[int], augments: Sequence[bool], models: Sequence[str], repeats: int, base_seed: int = 0
) -> list[Cell]:
    """Every cell, repeat outermost (a full curve per seed early), then model, size, augmentation.

    Args:
        sizes: sequence of int, training-set sizes (sorted, duplicates dropped).
        augments: sequence of bool, augmentation settings (duplicates dropped).
        models: sequence of str, model names (duplicates dropped).
        repeats: int, repeats; repeat ``r`` has seed ``base_seed + r``.
        base_seed: int, seed of repeat 0. Default 0.

    Returns:
        list of :class:`Cell`, ``repeats x models x sizes x augments`` long.
    """
    sizes = sorted(dict.fromkeys(int(s) for s in sizes))
    augments = list(dict.fromkeys(bool(a) for a in augments))
    models = list(dict.fromkeys(models))
    return [
        Cell(model, size, augment, base_seed + r, r)
        for r in range(repeats)
        for model in models
        for size in sizes
        for augment in augments
    ]


# === The budget ===


@dataclass(frozen=True)
class Schedule:
    """Epochs and steps per epoch of one cell; ``steps_per_epoch=None``: one pass over the patches."""

    epochs: int
    steps_per_epoch: int | None
    total_steps: int


def n_train_images(size: int, val_fraction: float) -> int:
    """Images left for training when ``size`` labelled images are split as :func:`split_train_val` does."""
    train, _ = split_train_val(list(range(size)), val_fraction)
    return len(train)


def total_step_budget(cfg: RunConfig, sizes: Sequence[int], budget_steps: int | None = None) -> int:
    """Optimizer steps of every cell under the ``steps`` budget.

    ``budget_steps`` if given, else ``epochs x steps_per_epoch`` of ``cfg``; when
    ``cfg`` leaves steps per epoch to the data, the steps the largest size gets in
    ``epochs`` passes (so the largest set is not under-trained).
    """
    if budget_steps is not None:
        return int(budget_steps)
    t, d = cfg.train, cfg.data
    if t.steps_per_epoch:
        return t.epochs * t.steps_per_epoch
    largest = n_train_images(max(sizes), d.val_fraction)
    return t.epochs * steps_per_pass(largest, d.patches_per_image, t.batch_size)


def cell_schedule(cfg: RunConfig, size: int, budget: str, total_steps: int | None = None) -> Schedule:
    """Epochs and steps per epoch of a cell of ``size`` images.

    ``steps``: ``cfg.train.epochs`` epochs (fewer if the budget is smaller) of
    ``ceil(total_steps / epochs)`` steps, the same for every size. ``epochs``:
    ``cfg.train.epochs`` passes over the cell's training patches.
    """
    t, d = cfg.train, cfg.data
    if budget == "steps":
        if not total_steps or total_steps < 1:
            raise UserInputError(f"`ablation.budget_steps` {total_steps}: must be at least 1")
        epochs = min(t.epochs, total_steps)
        per_epoch = math.ceil(total_steps / epochs)
        return Schedule(epochs, per_epoch, epochs * per_epoch)
    if budget == "epochs":
        per_pass = steps_per_pass(n_train_images(size, d.val_fraction), d.patches_per_image, t.batch_size)
        return Schedule(t.epochs, None, t.epochs * per_pass)
    raise UserInputError(f"`ablation.budget` {budget}: choose one of {', '.join(BUDGET_NAMES)}")


def cell_config(base: RunConfig, cell: Cell, schedule: Schedule, run_dir: Path, resume: bool) -> RunConfig:
    """The run configuration of one cell: base settings with its size, seed, augmentation, model and budget."""
    return replace_config(
        base,
        data={"train_size": cell.size, "augment": replace(base.data.augment, enabled=cell.augment)},
        model={"model": cell.model},
        train={
            "seed": cell.seed,
            "epochs": schedule.epochs,
            "steps_per_epoch": schedule.steps_per_epoch,
            "early_stopping_patience": schedule.epochs,  # never stops before the budget is spent
            "out": str(run_dir),
            "resume": resume,
        },
    )
