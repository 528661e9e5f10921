"""Where independent work runs: a Dask cluster named by ``scheduler``.

``scheduler`` is ``local:N`` (a :class:`distributed.LocalCluster` of N worker
processes on this machine, each pinned to ``threads_per_worker`` threads) or the
address of a running scheduler (``tcp://HOST:8786``, e.g. one that dask-jobqueue
started on a SLURM or PBS cluster). Both prediction of huge images
(:mod:`unet_tf.prediction.blockwise`) and independent training runs (the
ablation grid, seeds, folds) take it; no Dask is imported until it is used.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

from unet_tf.errors import UserInputError

CONNECT_TIMEOUT_S = 10
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def parse_scheduler(text: str) -> tuple[str, int | str]:
    """``("local", N)`` for ``local:N`` (or ``local``: one worker per core), ``("address", text)`` for an address."""
    text = str(text).strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or str(os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise UserInputError(f"`scheduler` {text!r}: expected local:N with N >= 1 workers, or tcp://HOST:PORT")
        return "local", int(count)
    if "://" not in text and ":" not in text:
        raise UserInputError(f"`scheduler` {text!r}: expected local:N or a scheduler address such as tcp://HOST:8786")
    return "address", text


def worker_environment(threads: int) -> dict[str, str]:
    """Environment pinning each worker's math libraries and TensorFlow to ``threads`` threads."""
    env = {name: str(threads) for name in THREAD_VARIABLES}
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def _local_cluster(workers: int, threads_per_worker: int | None):
    from distributed import LocalCluster

    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        dashboard_address=":0",
        env=worker_environment(threads),
    )


@contextmanager
def dask_client(
    scheduler: str, threads_per_worker: int | None = None, log: Callable[[str], None] = print
) -> Iterator["distributed.Client"]:  # noqa: F821
    """A :class:`distributed.Client` for ``scheduler``, closed (with its local cluster) on exit.

    An address no scheduler answers at within ``CONNECT_TIMEOUT_S`` seconds is a
    UserInputError naming it. The dashboard link is logged.
    """
    from distributed import Client

    kind, value = parse_scheduler(scheduler)
    cluster = _local_cluster(value, threads_per_worker) if kind == "local" else None
    try:
        try:
            client = Client(cluster if cluster is not None else value, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as err:
            raise UserInputError(
                f"`scheduler` {value}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s ({type(err).__name__})"
            ) from None
        with client:
            workers = len(client.scheduler_info().get("workers", {}))
            log(f"dask: {workers} worker(s) at {client.scheduler.address}; dashboard {client.dashboard_link}")
            yield client
    finally:
        if cluster is not None:
            cluster.close()
