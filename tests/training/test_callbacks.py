"""Warm-up + cosine rate, set per step, with ReduceLROnPlateau's cuts kept; atomic checkpoints that save
when Keras' ModelCheckpoint would; why a run stopped."""

import math
import warnings

import keras
import numpy as np
import pytest

from unet_tf.training.callbacks import AtomicModelCheckpoint, ScheduledLearningRate, TimeLimit, lr_factor, stop_reason


def test_lr_factor_by_hand():
    # warm-up over the first 5 % (linear from 0), then cosine from 1 down to 0.05 at the end
    assert [lr_factor(p) for p in (0.0, 0.01, 0.025, 0.05)] == pytest.approx([0.0, 0.2, 0.5, 1.0])
    assert lr_factor(0.525) == pytest.approx(0.05 + 0.95 * 0.5)  # half way through the cosine
    assert lr_factor(1.0) == lr_factor(3.0) == pytest.approx(0.05)  # past the plan: stays at the floor
    after = [lr_factor(p / 100) for p in range(5, 101)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert {lr_factor(p / 10, "constant") for p in range(11)} == {1.0}


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
    expected = [0.01 * lr_factor((s + 1) / 20) * (0.5 if s >= 8 else 1.0) for s in range(20)]
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)


def test_time_budget_moves_the_schedule_when_it_is_ahead_of_the_steps(monkeypatch):
    from unet_tf.training import callbacks as schedule_module

    clock = [100.0]
    monkeypatch.setattr(schedule_module.time, "perf_counter", lambda: clock[0])
    schedule = ScheduledLearningRate(0.01, steps_per_epoch=10, epochs=1000, max_minutes=1.0)
    schedule.on_train_begin()
    assert schedule.progress(0) == pytest.approx(1 / 10000)  # the steps lead at first
    clock[0] += 30  # half the minute gone after few steps: the time share leads
    assert schedule.progress(3) == pytest.approx(0.5)
    clock[0] += 60
    assert lr_factor(schedule.progress(4)) == pytest.approx(0.05)


def _saved_epochs(callback, path, values, monitor="val_dice"):
    """Epochs (0-based) at which ``callback`` wrote ``path`` for the logged ``values`` (None: not logged)."""
    callback.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    saved = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras and ours warn alike when the monitored value is missing
        for epoch, value in enumerate(values):
            if path.exists():
                path.unlink()
            callback.on_epoch_begin(epoch)
            callback.on_epoch_end(epoch, {} if value is None else {monitor: value, "loss": 1.0})
            if path.exists():
                saved.append(epoch)
    return saved


@pytest.mark.parametrize(
    "mode,threshold,values",
    [
        ("max", None, [0.5, 0.4, 0.7, 0.7, math.nan, 0.9, None, 0.8]),
        ("max", 0.8, [0.5, 0.85, 0.84, 0.9]),
        ("max", None, [math.nan, 0.5, 0.9]),  # a first NaN becomes the best: nothing beats it (as in Keras)
        ("min", None, [1.0, 1.2, 0.9, 0.9, math.nan, 0.3]),
        ("min", 0.5, [0.7, 0.4, 0.45]),
    ],
)
def test_atomic_checkpoint_saves_exactly_when_keras_model_checkpoint_does(tmp_path, mode, threshold, values):
    """The public-API checkpoint keeps ModelCheckpoint's monitor / mode / initial_value_threshold semantics."""
    ours = AtomicModelCheckpoint(
        tmp_path / "a.keras", monitor="val_dice", mode=mode, save_best_only=True, initial_value_threshold=threshold
    )
    theirs = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "b.keras"), monitor="val_dice", mode=mode, save_best_only=True, initial_value_threshold=threshold
    )
    expected = _saved_epochs(theirs, tmp_path / "b.keras", values)
    assert _saved_epochs(ours, tmp_path / "a.keras", values) == expected
    assert expected  # not vacuous: something was saved
    every = AtomicModelCheckpoint(tmp_path / "last.keras")
    assert _saved_epochs(every, tmp_path / "last.keras", values) == list(range(len(values)))
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary file left behind


def test_stop_reason_names_the_callback_that_ended_the_run():
    early = keras.callbacks.EarlyStopping()
    timer = TimeLimit(1.0)
    assert stop_reason([early, timer], 5, 5) == "epochs"
    assert stop_reason([early, timer], 3, 5) == "callback"
    timer.stopped = True
    assert stop_reason([early, timer], 3, 5) == "time_limit"
    early.stopped_epoch = 2
    assert stop_reason([early, timer], 3, 5) == "early_stopping"
