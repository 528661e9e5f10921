"""The one fit entry point: ``model.fit`` on one device, a ``strategy.run`` loop under tf.distribute.

Why two loops, and what the distributed one guarantees (the same train and
test steps, callbacks, stop requests and resume on every worker), is in
:mod:`unet_tf.training.distribute`'s docstring.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from unet_tf.training.distribute import is_default


def _without_autoshard(ds):
    """The pipeline shards itself (see :func:`unet_tf.data.pipeline.make_dataset`): tf.data must not shard again."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def any_worker(strategy) -> Callable[[bool], bool]:
    """``agree(flag)``: True on every worker when ``flag`` is True on at least one.

    A collective: every worker must call ``agree`` as often as the others.
    """

    @tf.function
    def count(flag):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(flag)), axis=None)

    return lambda flag: float(count(tf.constant(1.0 if flag else 0.0))) > 0


def broadcast_from_chief(strategy, variables: Sequence, extra: float = 0.0) -> float:
    """Give every replica the values of ``variables`` held by replica 0 (on the chief).

    Used after the chief alone restored a backup. One packed all-reduce: every
    replica but replica 0 contributes zeros. ``extra`` (a number, e.g. the
    epoch to resume at) travels along; its chief value is returned.
    """

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        first = tf.equal(ctx.replica_id_in_sync_group, 0)
        values = [tf.cast(tf.convert_to_tensor(v), tf.float64) for v in variables]
        values.append(tf.constant(extra, tf.float64))
        values = [tf.where(first, v, tf.zeros_like(v)) for v in values]  # not v * 0: NaN * 0 is NaN
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)

    reduced = strategy.experimental_local_results(tf.function(lambda: strategy.run(replica_fn))())[0]
    for variable, value in zip(variables, reduced[:-1]):
        variable.assign(tf.cast(value, variable.dtype))
    return float(reduced[-1])


def _first_replica(strategy, values: dict) -> dict:
    """Per-replica step outputs -> this worker's first replica's values, as floats (progress bar)."""
    return {k: float(strategy.experimental_local_results(v)[0]) for k, v in values.items()}


def _floats(values: dict) -> dict:
    return {k: float(v) for k, v in values.items()}


def _build_for_strategy(model, strategy) -> None:
    """Create the optimizer and metric variables under ``strategy``, as ``model.fit`` does.

    The one place that touches private Keras API (``_symbolic_build``): delete
    it, with :func:`fit_distributed`, once ``model.fit`` works under
    MultiWorkerMirroredStrategy (keras-team/keras#20585) and with uneven
    validation batches under MirroredStrategy.
    """
    with strategy.scope():
        batch_spec = tuple(tf.TensorSpec(t.shape, "float32") for t in (model.inputs[0], model.outputs[0]))
        model._symbolic_build(data_batch=batch_spec)
        model.optimizer.build(model.trainable_variables)


def _step_functions(strategy, model):
    """Compiled ``train_step(iterator)`` and ``test_step(batch)`` under ``strategy``."""

    @tf.function(reduce_retracing=True)
    def train_step(iterator):
        return strategy.run(model.train_step, args=(next(iterator),))

    def test_replica(batch):
        # A replica whose share of the validation tiles ran out gets empty batches while others still
        # have tiles (tf.distribute keeps all in step); BatchNormalization cannot take them: skip.
        def run():
            model.test_step(batch)
            return tf.constant(True)

        return tf.cond(tf.shape(batch[0])[0] > 0, run, lambda: tf.constant(False))

    @tf.function(reduce_retracing=True)
    def test_step(batch):
        return strategy.run(test_replica, args=(batch,))

    return train_step, test_step


def _distributed(strategy, make_dataset: Callable[[tuple[int, int]], Any]):
    """``make_dataset(shard)`` on every worker, fed to its replicas."""
    return strategy.distribute_datasets_from_function(
        lambda ctx: _without_autoshard(make_dataset((ctx.input_pipeline_id, ctx.num_input_pipelines)))
    )


def _run_epoch(strategy, model, steps, iterator, val_dist, callback_list, steps_per_epoch: int) -> dict:
    """One epoch of training steps and a validation pass; the epoch logs over all replicas."""
    train_step, test_step = steps
    model.reset_metrics()
    for step in range(steps_per_epoch):
        callback_list.on_train_batch_begin(step)
        logs = train_step(iterator)
        callback_list.on_train_batch_end(step, _first_replica(strategy, logs))
    epoch_logs = _floats(model.get_metrics_result())  # all replicas of all workers
    model.reset_metrics()
    callback_list.on_test_begin()
    for step, batch in enumerate(val_dist):
        callback_list.on_test_batch_begin(step)
        test_step(batch)
        callback_list.on_test_batch_end(step)
    val_logs = _floats(model.get_metrics_result())
    callback_list.on_test_end(val_logs)
    epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
    return epoch_logs


def fit_distributed(
    strategy,
    model,
    train_dataset: Callable[[tuple[int, int]], Any],
    val_dataset: Callable[[tuple[int, int]], Any],
    *,
    epochs: int,
    steps_per_epoch: int,
    callbacks: Sequence = (),
    verbose: int | str = "auto",
):
    """``model.fit`` under a Mirrored or MultiWorkerMirrored strategy; returns the ``keras.callbacks.History``.

    Args:
        strategy: the strategy ``model`` was built under.
        model: built and compiled under ``strategy.scope()``.
        train_dataset: ``shard -> tf.data.Dataset`` of per-replica training
            batches ``(x, y)``, endless (``.repeat()``); ``shard = (worker,
            workers)``. Called once per worker; the local replicas take
            consecutive batches from it.
        val_dataset: the same for validation batches, finite.
        epochs, steps_per_epoch: every worker runs exactly these many steps.
        callbacks: Keras callbacks, called as ``model.fit`` calls them; epoch
            logs are over all workers, so every worker's callbacks decide alike.
        verbose: progress bar as in ``model.fit`` (0 on workers other than the chief).

    A stop request (early stopping, a time limit, a NaN loss) takes effect at
    the end of the epoch on every worker at once. The resume point (restored
    by ``BackupAndRestore`` on the chief, which alone reads its run folder) is
    broadcast with the weights and the optimizer state before the first step.
    """
    train_dist, val_dist = _distributed(strategy, train_dataset), _distributed(strategy, val_dataset)
    _build_for_strategy(model, strategy)
    steps = _step_functions(strategy, model)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    agree = any_worker(strategy)
    model.stop_training = False
    model._initial_epoch = None  # set by BackupAndRestore.on_train_begin when it restores (private Keras)
    callback_list.on_train_begin()
    state = list(model.weights) + list(model.optimizer.variables)
    initial_epoch = int(round(broadcast_from_chief(strategy, state, float(model._initial_epoch or 0))))
    iterator = iter(train_dist)
    epoch_logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        epoch_logs = _run_epoch(strategy, model, steps, iterator, val_dist, callback_list, steps_per_epoch)
        callback_list.on_epoch_end(epoch, epoch_logs)
        model.stop_training = agree(bool(model.stop_training))
        if model.stop_training:
            break
    callback_list.on_train_end(logs=epoch_logs)
    return model.history


def fit(
    strategy,
    model,
    train_dataset: Callable[[tuple[int, int]], Any],
    val_dataset: Callable[[tuple[int, int]], Any],
    *,
    epochs: int,
    steps_per_epoch: int | None,
    pass_steps: int,
    callbacks: Sequence = (),
    verbose: int | str = "auto",
    log: Callable[[str], None] = print,
):
    """The one fit entry point: ``model.fit`` on one device, :func:`fit_distributed` under a strategy.

    ``train_dataset(shard)`` / ``val_dataset(shard)`` make one replica's
    batches for worker shard ``(i, n)``; ``steps_per_epoch`` None means one
    pass over the patches (``pass_steps`` steps). Returns the ``keras.callbacks.History``.

    Both loops read the training batches through ONE iterator of the repeated
    dataset and count steps. ``model.fit`` on the finite dataset would make a
    new iterator every epoch, and on a busy 2-core CPU that start waited 8-14 s,
    idle, in about a third of the epochs (BENCHMARKS.md, "Round 5").
    """
    steps_per_epoch = steps_per_epoch or pass_steps
    if is_default(strategy):
        return model.fit(
            train_dataset((0, 1)).repeat(),
            validation_data=val_dataset((0, 1)),
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
    replicas = strategy.num_replicas_in_sync
    log(f"{replicas} replicas in sync: a step takes one batch on each ({replicas} batches per step)")
    return fit_distributed(
        strategy,
        model,
        lambda shard: train_dataset(shard).repeat(),
        val_dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
