"""The Keras callbacks of a training run: checkpoints, early stopping, LR schedule and plateau, logs."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Sequence

import keras

from .config import RunConfig
from .finetune import FreezeEncoder
from .io import atomic_path
from .lr_schedule import ScheduledLearningRate


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes to a temporary file and renames it (never a half-written model)."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            with atomic_path(filepath) as tmp:
                self.model.save(tmp)


class TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch that crosses ``minutes`` of wall time."""

    def __init__(self, minutes: float):
        super().__init__()
        self.minutes = minutes

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.start > self.minutes * 60:
            self.model.stop_training = True


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
