"""Learning rate over the run: linear warm-up, then a cosine decay (or constant), under ReduceLROnPlateau.

The shape is set per step by a callback rather than a Keras ``LearningRateSchedule``
so that ReduceLROnPlateau (which writes the optimizer's rate) keeps working: a
cut it makes is remembered as a factor on every later step.
"""

from __future__ import annotations

import math
import time

import keras

WARMUP_FRACTION = 0.05  # of all planned steps
FINAL_FRACTION = 0.05  # the cosine ends at this fraction of the peak rate


def lr_factor(progress: float, schedule: str = "cosine") -> float:
    """The rate at ``progress`` (0..1 of the run) as a fraction of ``--lr``.

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
    continues the curve) or, with a time budget (``--max-minutes``), the
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
