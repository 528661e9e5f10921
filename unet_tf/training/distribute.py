"""Scale training out with TensorFlow's own strategies: several GPUs, several machines.

``train.strategy`` picks one (:func:`make_strategy`):

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
trains with :func:`unet_tf.training.fit.fit_distributed`: the same ``model.train_step`` and
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
  2 GPUs. :func:`~unet_tf.training.fit.fit_distributed` skips empty replica batches.

Data: each worker builds its own input pipeline holding every ``n``-th patch
(``make_dataset(shard=...)``), cut and augmented only there, from the same
seed, so the workers together see exactly the patches a single process would
see with the same global batch; tf.data's own auto-sharding is turned off.
Validation tiles are split the same way, and the metrics (confusion counts
and loss sums) are added over all replicas before the scores are taken.

Batch and learning rate: ``train.batch_size`` is the batch of one replica; a step
consumes ``batch_size x replicas`` patches (the global batch). The learning
rate is used as given; scale it yourself if you want the linear-scaling rule.

A multi-worker strategy must exist before TensorFlow runs any op in the
process: :func:`make_strategy` is the first thing :func:`unet_tf.training.run.train`
does.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any, Callable, NamedTuple

import tensorflow as tf

from unet_tf.config import STRATEGY_NAMES
from unet_tf.errors import UserInputError

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
        raise UserInputError(
            f"TF_CONFIG: task {kind} {index} is not in the cluster ({len(tasks[kind])} {kind} task(s))"
        )
    offset = len(chiefs) if kind == "worker" else 0
    is_chief = kind == "chief" or (not chiefs and index == 0)
    return WorkerInfo(offset + index, len(chiefs) + len(workers), is_chief)


# === Strategies ===


def make_strategy(name: str = "auto"):
    """The ``tf.distribute.Strategy`` named by ``train.strategy``.

    Call it before any other TensorFlow op of the process: a multi-worker
    strategy configures the collective ops of the runtime, which TensorFlow
    allows only at start-up (a UserInputError says so otherwise). A process
    gets one strategy per name, made on the first call (trainings in one
    process, as in the ablation grid, share it): two mirrored strategies in
    one process would number their collective ops alike and clash.
    """
    if name not in STRATEGIES:
        raise UserInputError(f"`train.strategy` {name}: choose one of {', '.join(STRATEGIES)}")
    return _make_strategy(name)


@functools.cache
def _make_strategy(name: str):
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG", "").strip():
            raise UserInputError(
                "`train.strategy` multiworker: set TF_CONFIG on every machine, e.g. "
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
                "`train.strategy` multiworker: TensorFlow already ran in this process; the multi-worker strategy "
                "must be created first (one training per process)"
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
    """A warning when TF_CONFIG names several workers but ``train.strategy`` is not multiworker."""
    if name == "multiworker":
        return None
    try:
        count = worker_info(tf_config).count
    except UserInputError:
        return None
    if count > 1:
        return (
            f"note: TF_CONFIG names {count} workers but `train.strategy` is {name}: this process trains alone "
            "(use `train.strategy` multiworker on every worker)"
        )
    return None


# === One run ===


def start_strategy(name: str, log: Callable[[str], None] = print) -> tuple[Any, WorkerInfo | None]:
    """``(strategy, worker)``: the strategy ``name`` (made before any other TensorFlow op, see
    :func:`make_strategy`) and, under ``multiworker``, this process's place in the cluster (else None)."""
    strategy = make_strategy(name)  # first: before any other TensorFlow op
    note = cluster_note(name)
    if note:
        log(note)
    return strategy, worker_info() if name == "multiworker" else None


def check_workers(n_patches: int, worker: WorkerInfo | None) -> None:
    """UserInputError when a multi-worker run has fewer training patches per epoch (``n_patches``) than workers."""
    if worker and n_patches < worker.count:
        raise UserInputError(
            f"{n_patches} training patches per epoch are fewer than the {worker.count} workers: "
            "raise `data.patches_per_image`"
        )


def distribution(strategy: Any, name: str, batch_size: int, worker: WorkerInfo | None) -> dict | None:
    """How a run is spread over replicas and workers, for ``config.json`` and ``summary.json``: ``strategy``
    (``name``), ``replicas``, ``global_batch_size`` (``batch_size`` per replica), ``workers``; None on one device."""
    if is_default(strategy):
        return None
    replicas = strategy.num_replicas_in_sync
    return {
        "strategy": name,
        "replicas": replicas,
        "global_batch_size": batch_size * replicas,
        "workers": worker.count if worker else 1,
    }


__all__ = [
    "STRATEGIES",
    "WorkerInfo",
    "worker_info",
    "make_strategy",
    "is_default",
    "strategy_scope",
    "cluster_note",
    "start_strategy",
    "check_workers",
    "distribution",
]
