"""The Keras callbacks of a training run: checkpoints, early stopping, the learning-rate schedule
(:func:`lr_factor`, :class:`ScheduledLearningRate`) and plateau cuts, the CSV log, resume backup.

:class:`AtomicModelCheckpoint` is written on the public ``keras.callbacks.Callback`` API: Keras'
own ``ModelCheckpoint`` writes in place (a run killed mid-save would leave a half-written
``best.keras``), and replacing only its write meant overriding its private methods.
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from unet_tf.config import RunConfig
from unet_tf.data.targets import IGNORE_ID
from unet_tf.io.writers import atomic_path
from unet_tf.training.finetune import FreezeEncoder


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model at the end of each epoch, or only when ``monitor`` improves; atomically.

    ``keras.callbacks.ModelCheckpoint(filepath, monitor, mode=mode, save_best_only=...,
    initial_value_threshold=...)`` with ``save_freq="epoch"``, as the runs used it, but the model is
    written to a temporary file and renamed, so ``filepath`` never holds a half-written model.

    Args:
        filepath: str or Path. The ``.keras`` file (no ``{epoch}`` placeholders).
        monitor: str. The logged value that decides, with ``save_best_only``. Default ``val_loss``.
        mode: ``"min"`` or ``"max"``: which way is better. Default ``"min"``.
        save_best_only: bool. Save only when ``monitor`` beats the best so far. Default False.
        initial_value_threshold: float or None. The best so far before the first epoch (a resumed
            run's :func:`best_so_far`); None: the first epoch is saved whatever its value.

    As in Keras: an epoch whose logs lack ``monitor`` is saved (with a warning); a NaN value never
    beats a number, and a first NaN becomes the best (nothing beats it after).
    """

    def __init__(
        self,
        filepath: str | Path,
        monitor: str = "val_loss",
        mode: str = "min",
        save_best_only: bool = False,
        initial_value_threshold: float | None = None,
    ):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.filepath = str(filepath)
        self.monitor, self.mode, self.save_best_only = monitor, mode, save_best_only
        self.best = initial_value_threshold

    def improved(self, current) -> bool:
        """Whether ``current`` beats :attr:`best` (it becomes the best when it does)."""
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            return True
        if np.ndim(current) > 0:
            warnings.warn(f"Can save best model only when `monitor` is a scalar value. Received: {current}.")
            return True
        if self.best is not None and not (current > self.best if self.mode == "max" else current < self.best):
            return False
        self.best = current
        return True

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only and not self.improved((logs or {}).get(self.monitor)):
            return
        with atomic_path(self.filepath) as tmp:
            self.model.save(tmp)


class TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch that crosses ``minutes`` of wall time."""

    def __init__(self, minutes: float):
        super().__init__()
        self.minutes = minutes
        self.stopped = False  # whether this callback ended the run

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.start > self.minutes * 60:
            self.model.stop_training = self.stopped = True


def best_so_far(history_csv: Path, metric: str, mode: str) -> float | None:
    """The best finite ``metric`` in a run's ``history.csv`` (``mode`` ``"max"`` or ``"min"``); None
    when there is no file, no such column or no finite value. A resumed run starts its best checkpoint
    from here, so its first epoch does not overwrite a better ``best.keras`` of the interrupted run."""
    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as f:
        values = [float(row[metric]) for row in csv.DictReader(f) if row.get(metric) not in (None, "")]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def choose_monitor(val_masks: Sequence[np.ndarray], log: Callable[[str], None] = print) -> tuple[str, str]:
    """(metric, mode) that picks ``best.keras``: validation Dice, or validation loss when Dice is undefined.

    With no foreground pixel in any validation mask, Dice is NaN whenever the
    model predicts no foreground (and 0 otherwise), so no epoch would ever be
    "best" and best.keras would never be written: monitor the loss instead.
    """
    if any(np.any((m > 0) & (m != IGNORE_ID)) for m in val_masks):
        return "val_dice", "max"
    log(
        "note: the validation images hold no foreground, so validation Dice is undefined: best.keras and early "
        "stopping follow the validation loss instead"
    )
    return "val_loss", "min"


def make_callbacks(
    cfg: RunConfig,
    run_dir: Path,
    steps_per_epoch: int,
    monitor: tuple[str, str] = ("val_dice", "max"),
    extra: Sequence = (),
) -> list:
    """Checkpoints (best by ``monitor``, last), early stopping, LR schedule and plateau, CSV log, resume backup."""
    t = cfg.train
    metric, mode = monitor
    best = best_so_far(run_dir / "history.csv", metric, mode) if t.resume else None
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        ScheduledLearningRate(t.lr, steps_per_epoch, t.epochs, t.lr_schedule, t.max_minutes),
        AtomicModelCheckpoint(
            str(run_dir / "best.keras"), monitor=metric, mode=mode, save_best_only=True, initial_value_threshold=best
        ),
        AtomicModelCheckpoint(str(run_dir / "last.keras")),
        keras.callbacks.EarlyStopping(monitor=metric, mode=mode, patience=t.early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=t.reduce_lr_patience, min_lr=1e-5),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=t.resume),
        keras.callbacks.TerminateOnNaN(),
    ]
    if t.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    if t.max_minutes:
        callbacks.append(TimeLimit(t.max_minutes))
    if t.freeze_encoder_epochs:
        callbacks.append(FreezeEncoder(t.freeze_encoder_epochs))
    return callbacks + list(extra)


def stop_reason(callbacks: Sequence, epochs_run: int, epochs: int) -> str:
    """Why a fit with these ``callbacks`` ended after ``epochs_run`` of ``epochs`` planned epochs:
    ``early_stopping``, ``time_limit``, ``epochs`` (all ran) or ``callback`` (another callback)."""
    if any(isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0 for c in callbacks):
        return "early_stopping"
    if any(isinstance(c, TimeLimit) and c.stopped for c in callbacks):
        return "time_limit"
    return "epochs" if epochs_run >= epochs else "callback"


WARMUP_FRACTION = 0.05  # of all planned steps


FINAL_FRACTION = 0.05  # the cosine ends at this fraction of the peak rate


def lr_factor(progress: float, schedule: str = "cosine") -> float:
    """The rate at ``progress`` (0..1 of the run) as a fraction of ``train.lr``.

    ``cosine``: linear warm-up over the first 5 % of the run, then a half
    cosine down to 5 % at its end (and there after). ``constant``: 1
    throughout (ReduceLROnPlateau alone lowers it).
    """
    if schedule == "constant":
        return 1.0
    progress = min(max(progress, 0.0), 1.0)
    if progress < WARMUP_FRACTION:
        return progress / WARMUP_FRACTION
    x = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
    return FINAL_FRACTION + (1.0 - FINAL_FRACTION) * 0.5 * (1.0 + math.cos(math.pi * x))


class ScheduledLearningRate(keras.callbacks.Callback):
    """Sets the optimizer's rate before every step to ``peak * lr_factor(progress) * plateau cuts``.

    Progress is the step count over the planned steps (``steps_per_epoch *
    epochs``, counted from the epoch Keras starts at, so a resumed run
    continues the curve) or, with a time budget (``train.max_minutes``), the
    elapsed share of it, whichever is further: a run cut short by its budget
    still warms up and anneals. A rate lower than the one this callback last
    set means that ReduceLROnPlateau cut it: the ratio is kept as a factor
    for the rest of the run.
    """

    def __init__(
        self, peak: float, steps_per_epoch: int, epochs: int, schedule: str = "cosine", max_minutes: float | None = None
    ):
        super().__init__()
        self.peak, self.steps_per_epoch, self.schedule = peak, steps_per_epoch, schedule
        self.total = max(1, steps_per_epoch * epochs)
        self.budget = max_minutes * 60 if max_minutes else None
        self.cut = 1.0
        self._epoch = 0
        self._last_set: float | None = None
        self._start = time.perf_counter()

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._notice_cut()

    def progress(self, batch: int) -> float:
        done = (self._epoch * self.steps_per_epoch + batch + 1) / self.total
        if self.budget:
            done = max(done, (time.perf_counter() - self._start) / self.budget)
        return done

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.peak * self.cut * lr_factor(self.progress(batch), self.schedule)
        self.model.optimizer.learning_rate = rate
        self._last_set = rate

    def _notice_cut(self):
        current = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self._last_set is not None and current < self._last_set * (1 - 1e-6):
            self.cut *= current / self._last_set
        self._last_set = current
