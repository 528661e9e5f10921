"""Scale training out with TensorFlow's own strategies: several GPUs, several machines.

``train.py --strategy`` picks one (:func:`make_strategy`):

* ``auto`` (default): :class:`tf.distribute.MirroredStrategy` over all GPUs when
  more than one is visible, else TensorFlow's default strategy (one device,
  exactly the single-machine behaviour).
* ``none``: the default strategy, whatever the hardware.
* ``mirrored``: MirroredStrategy over every local GPU (or, without GPUs, every
  logical CPU device: one, unless a program split the CPU).
* ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the
  machines named by the ``TF_CONFIG`` environment variable, each using all its
  GPUs; worker 0 (or the ``chief`` task) writes the run folder.

The default strategy trains with ``model.fit``, as always. Every other one
trains with :func:`fit_distributed`: the same ``model.train_step`` and
``model.test_step`` (so the same loss, metrics and optimizer) under
``strategy.run``, driving the same Keras callbacks (checkpoints, CSV log, early
stopping, learning-rate schedule, backup and restore). ``model.fit`` is not
used there because, with Keras 3.15 / TF 2.21:

* under MultiWorkerMirroredStrategy it fails on its first step
  (keras-team/keras#20585, "Attempt to convert a value (PerReplica...)");
* under MirroredStrategy it fails in validation whenever a batch has fewer
  tiles than there are replicas (some replica gets an empty batch: Keras'
  ``evaluate`` cannot average the uneven batches and BatchNormalization cannot
  take an empty one), e.g. 33 validation tiles with a global batch of 16 on
  2 GPUs. :func:`fit_distributed` skips empty replica batches.

Data: each worker builds its own input pipeline holding every ``n``-th patch
(``make_dataset(shard=...)``), cut and augmented only there, from the same
seed, so the workers together see exactly the patches a single process would
see with the same global batch; tf.data's own auto-sharding is turned off.
Validation tiles are split the same way, and the metrics (confusion counts
and loss sums) are added over all replicas before the scores are taken.

Batch and learning rate: ``--batch-size`` is the batch of one replica; a step
consumes ``batch_size x replicas`` patches (the global batch). The learning
rate is used as given; scale it yourself if you want the linear-scaling rule.

A multi-worker strategy must exist before TensorFlow runs any op in the
process: :func:`make_strategy` is the first thing :func:`unet_tf.training.train`
does.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any, Callable, NamedTuple, Sequence

import keras
import tensorflow as tf

from .config import STRATEGY_NAMES
from .errors import UserInputError

STRATEGIES = STRATEGY_NAMES


class WorkerInfo(NamedTuple):
    """Where this process stands in the cluster: worker ``index`` of ``count``."""

    index: int
    count: int
    is_chief: bool


# === TF_CONFIG (pure) ===


def worker_info(tf_config: str | None = None) -> WorkerInfo:
    """This worker's index, the number of workers and whether it is the chief.

    Reads ``tf_config`` (default: the ``TF_CONFIG`` environment variable); no
    TF_CONFIG means one worker, the chief. Workers are numbered as TensorFlow
    numbers its input pipelines: the ``chief`` task first (if the cluster has
    one), then the ``worker`` tasks. The chief is the ``chief`` task, or worker
    0 when there is none. A malformed TF_CONFIG is a UserInputError.
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return WorkerInfo(0, 1, True)
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserInputError(
            f"TF_CONFIG: not a cluster description ({type(exc).__name__}: {exc}); expected "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    if len(chiefs) > 1:
        raise UserInputError(f"TF_CONFIG: at most one chief task, got {len(chiefs)}")
    tasks = {"chief": chiefs, "worker": workers}
    if kind not in tasks:
        raise UserInputError(f"TF_CONFIG: task type '{kind}' is not supported here (chief or worker)")
    if not 0 <= index < len(tasks[kind]):
        raise UserInputError(f"TF_CONFIG: task {kind} {index} is not in the cluster ({len(tasks[kind])} {kind} task(s))")
    offset = len(chiefs) if kind == "worker" else 0
    is_chief = kind == "chief" or (not chiefs and index == 0)
    return WorkerInfo(offset + index, len(chiefs) + len(workers), is_chief)


# === Strategies ===


def make_strategy(name: str = "auto"):
    """The ``tf.distribute.Strategy`` named by ``--strategy``.

    Call it before any other TensorFlow op of the process: a multi-worker
    strategy configures the collective ops of the runtime, which TensorFlow
    allows only at start-up (a UserInputError says so otherwise). A process
    gets one strategy per name, made on the first call (trainings in one
    process, as in the ablation grid, share it): two mirrored strategies in
    one process would number their collective ops alike and clash.
    """
    if name not in STRATEGIES:
        raise UserInputError(f"--strategy {name}: choose one of {', '.join(STRATEGIES)}")
    return _make_strategy(name)


@functools.cache
def _make_strategy(name: str):
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG", "").strip():
            raise UserInputError(
                "--strategy multiworker: set TF_CONFIG on every machine, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
            )
        worker_info()  # a readable error for a malformed TF_CONFIG
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO  # NCCL on GPUs, ring on CPUs
        )
        try:
            return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as exc:
            if "at program startup" not in str(exc):
                raise
            raise UserInputError(
                "--strategy multiworker: TensorFlow already ran in this process; the multi-worker strategy must be "
                "created first (one training per process)"
            ) from None
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "auto" and len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_default(strategy) -> bool:
    """True for TensorFlow's default (no-op, one device) strategy."""
    return strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()


def strategy_scope(strategy):
    """``strategy.scope()``; nothing at all for the default strategy."""
    return contextlib.nullcontext() if is_default(strategy) else strategy.scope()


def cluster_note(name: str, tf_config: str | None = None) -> str | None:
    """A warning when TF_CONFIG names several workers but ``--strategy`` is not multiworker."""
    if name == "multiworker":
        return None
    try:
        count = worker_info(tf_config).count
    except UserInputError:
        return None
    if count > 1:
        return f"note: TF_CONFIG names {count} workers but --strategy is {name}: this process trains alone " \
               "(use --strategy multiworker on every worker)"
    return None


# === Distributed training loop ===


def _without_autoshard(ds):
    """The pipeline shards itself (see :func:`unet_tf.pipeline.make_dataset`): tf.data must not shard again."""
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
        callbacks: Keras callbacks, called as ``model.fit`` calls them. Logs at
            an epoch end are over all workers, so every worker's callbacks
            decide alike.
        verbose: progress bar as in ``model.fit`` (0 on workers other than the chief).

    A stop request (``model.stop_training``: early stopping, a time limit, a NaN
    loss) takes effect at the end of the epoch, on every worker at once. The
    resume point (``BackupAndRestore`` restores the chief, which alone can read
    its run folder) is broadcast from the chief with the weights and the
    optimizer state before the first step.
    """
    train_dist, val_dist = _distributed(strategy, train_dataset), _distributed(strategy, val_dataset)
    _build_for_strategy(model, strategy)
    steps = _step_functions(strategy, model)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch, model=model,
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
    pass over the patches (``pass_steps`` steps, needed by the distributed
    loop, which always counts steps). Returns the ``keras.callbacks.History``.
    """
    if is_default(strategy):
        train_ds = train_dataset((0, 1))
        if steps_per_epoch:
            train_ds = train_ds.repeat()
        return model.fit(train_ds, validation_data=val_dataset((0, 1)), epochs=epochs,
                         steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose, shuffle=False)
    replicas = strategy.num_replicas_in_sync
    log(f"{replicas} replicas in sync: a step takes one batch on each ({replicas} batches per step)")
    return fit_distributed(strategy, model, lambda shard: train_dataset(shard).repeat(), val_dataset,
                           epochs=epochs, steps_per_epoch=steps_per_epoch or pass_steps,
                           callbacks=callbacks, verbose=verbose)


__all__ = [
    "STRATEGIES", "WorkerInfo", "worker_info", "make_strategy", "is_default", "strategy_scope", "cluster_note",
    "any_worker", "broadcast_from_chief", "fit_distributed", "fit",
]
