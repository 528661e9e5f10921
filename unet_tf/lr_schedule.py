"""Learning rate over the run: linear warm-up, then a cosine decay (or constant), under ReduceLROnPlateau.

The shape is set per step by a callback rather than a Keras ``LearningRateSchedule``
so that ReduceLROnPlateau (which writes the optimizer's rate) keeps working: a
cut it makes is remembered as a factor on every later step.
"""

from __future__ import annotations

import math

import keras

WARMUP_FRACTION = 0.05  # of all planned steps
FINAL_FRACTION = 0.05  # the cosine ends at this fraction of the peak rate


def lr_factor(step: int, total_steps: int, schedule: str = "cosine") -> float:
    """The rate at ``step`` (0-based) as a fraction of ``--lr``.

    ``cosine``: linear warm-up over the first 5 % of ``total_steps`` (from
    1/warm-up steps), then a half cosine down to 5 % at the last step.
    ``constant``: 1 throughout (ReduceLROnPlateau alone lowers it).
    """
    if schedule == "constant" or total_steps <= 1:
        return 1.0
    warmup = max(1, round(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - 1 - warmup))
    return FINAL_FRACTION + (1.0 - FINAL_FRACTION) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ScheduledLearningRate(keras.callbacks.Callback):
    """Sets the optimizer's rate before every step to ``peak * lr_factor(step) * plateau cuts``.

    Steps count from the epoch Keras starts at (so a resumed run continues the
    curve). A rate lower than the one this callback last set means that
    ReduceLROnPlateau cut it: the ratio is kept as a factor for the rest of the run.
    """

    def __init__(self, peak: float, steps_per_epoch: int, epochs: int, schedule: str = "cosine"):
        super().__init__()
        self.peak, self.steps_per_epoch, self.schedule = peak, steps_per_epoch, schedule
        self.total = steps_per_epoch * epochs
        self.cut = 1.0
        self._epoch = 0
        self._last_set: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._notice_cut()

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch * self.steps_per_epoch + batch
        rate = self.peak * self.cut * lr_factor(step, self.total, self.schedule)
        self.model.optimizer.learning_rate = rate
        self._last_set = rate

    def _notice_cut(self):
        current = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self._last_set is not None and current < self._last_set * (1 - 1e-6):
            self.cut *= current / self._last_set
        self._last_set = current
