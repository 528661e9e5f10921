"""Independent training runs as Dask tasks: one run per worker, results collected as they finish.

The ablation grid (:func:`unet_tf.ablation.run_ablation`) and k-fold cross-validation
(:func:`unet_tf.ablation.folds.run_folds`) are made of runs that share nothing but
their settings; with ``scheduler`` (:func:`unet_tf.cluster.dask_client`: ``local:N``
or ``tcp://HOST:8786``) each run is one ``client.submit`` of a module-level function
that writes its own run folder and returns its result row. The caller skips finished
runs before submitting and writes its reports from the rows, in this process, as
they arrive.

One run per worker: a worker's threads are both Dask's task slots and the threads
TensorFlow is pinned to (:func:`unet_tf.cluster.worker_environment`), and two Keras
trainings in one process share global state (the session, the random seed). So
every worker, present or joining later, is given one :data:`RUN_RESOURCE` by a
worker plugin, and every run asks for it: a worker of 4 threads trains one model
on 4 threads, never 4 models at once. The run itself goes to a fresh Python process
of the worker (:func:`unet_tf.ablation.isolated.run_in_process`: Dask's own threads
would otherwise draw from the random numbers that seed the model), so its numbers
follow its seed and the worker's thread count, not the worker's history. A worker
that dies mid-run loses its task to Dask, which runs it again elsewhere; the run
resumes from its last finished epoch (the run folder's backup) or starts clean.

Run folders and data must be on a file system that every worker sees (a
:class:`~distributed.LocalCluster` shares this machine's). This module imports
Dask: callers import it only when ``scheduler`` is given.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Hashable, Sequence

from distributed import as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from unet_tf.ablation.isolated import run_pickled
from unet_tf.cluster import dask_client

RUN_RESOURCE = "training_run"
Log = Callable[[str], None]


class OneRunPerWorker(WorkerPlugin):
    """Gives each worker one :data:`RUN_RESOURCE`: on registration, and to workers that join or restart later."""

    name = "unet_tf-one-run-per-worker"

    def setup(self, worker):
        return worker.set_resources(**{RUN_RESOURCE: 1})


def run_tasks(
    scheduler: str,
    function: Callable[..., Any],
    jobs: Sequence[tuple[Hashable, str, tuple]],
    on_done: Callable[[Hashable, Any], None],
    log: Log = print,
) -> None:
    """Run ``function(*args)`` for every ``(key, name, args)`` of ``jobs`` on ``scheduler``, one per worker,
    each in a process of its own (:func:`unet_tf.ablation.isolated.run_in_process`).

    ``on_done(key, result)`` is called in this process as each run finishes (in the order they finish).
    An exception of a run is raised here (the runs already done have had their ``on_done``);
    a run whose worker died is run again by Dask.

    Args:
        scheduler: str, ``local:N`` or a scheduler address (:func:`unet_tf.cluster.dask_client`).
        function: a module-level function (workers import it by name).
        jobs: sequence of (key, name, args): the caller's key, a unique name for the task, the arguments.
        on_done: callable taking (key, result).
        log: callable taking one line.
    """
    if not jobs:
        return
    with dask_client(scheduler, log=log) as client:
        client.register_plugin(OneRunPerWorker())
        futures = {
            client.submit(
                run_pickled,
                pickle.dumps((function, args)),
                key=f"unet_tf-{name}",
                pure=False,
                resources={RUN_RESOURCE: 1},
            ): key
            for key, name, args in jobs
        }
        log(f"dask: {len(futures)} run(s) submitted, one per worker at a time")
        for future in as_completed(futures):
            on_done(futures[future], future.result())
