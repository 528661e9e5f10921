"""Warm-up + cosine rate, set per step, with ReduceLROnPlateau's cuts kept."""

import math

import keras
import numpy as np
import pytest

from unet_tf.lr_schedule import ScheduledLearningRate, lr_factor


def test_lr_factor_by_hand():
    # 100 steps: warm-up 5 steps (0.2, 0.4, ... 1.0), then cosine from 1 at step 5 to 0.05 at step 99
    assert [lr_factor(s, 100) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lr_factor(99, 100) == pytest.approx(0.05)
    mid = 5 + (99 - 5) / 2
    assert lr_factor(int(mid), 100) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)), abs=0.02)
    after = [lr_factor(s, 100) for s in range(5, 100)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert lr_factor(500, 100) == pytest.approx(0.05)  # past the plan (a longer resumed run): stays at the floor
    assert {lr_factor(s, 100, "constant") for s in range(100)} == {1.0}


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class _Cut(keras.callbacks.Callback):
    """Halves the rate after epoch 1, as ReduceLROnPlateau would."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) * 0.5


def test_callback_sets_each_step_and_keeps_plateau_cuts():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = np.zeros((8, 2), "float32")
    record = _Record()
    schedule = ScheduledLearningRate(0.01, steps_per_epoch=4, epochs=5)
    model.fit(x, x[:, :1], batch_size=2, epochs=5, verbose=0, callbacks=[schedule, _Cut(), record])
    expected = [0.01 * lr_factor(s, 20) * (0.5 if s >= 8 else 1.0) for s in range(20)]
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)
