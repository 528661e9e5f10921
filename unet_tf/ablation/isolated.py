"""A run in a Python process of its own: how a Dask worker trains, so its numbers follow the seed alone.

Keras draws the seeds of a new model's initializers from Python's process-wide
``random`` module (``keras.utils.set_random_seed`` seeds it), and a Dask worker's
own threads draw from that module too, at moments no one chooses: measured, the
same seeded fold gave validation Dice 0.157 and 0.058 on two runs of one worker,
while every run in a plain process gave 0.128. :func:`run_in_process` runs
``function(*args)`` in a fresh interpreter (``python -m unet_tf.ablation.isolated``,
the worker's environment and thread pinning), where nothing else draws; TensorFlow's
memory goes back when the run ends. The process exits when its parent dies (a
killed worker leaves no run writing into a folder that Dask gives to another).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from unet_tf.io.writers import atomic_path

PARENT_POLL_S = 1.0


class PrefixLog:
    """A picklable log for a worker: prints each line with ``prefix`` (the run's name), flushed."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, line: str) -> None:
        print(f"{self.prefix}{line}", flush=True)


def run_in_process(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a new Python process; its return value, or its exception raised here.

    ``function`` must be importable by name (module level) and ``args`` picklable; the child
    inherits this process's environment, working folder, stdout and stderr.
    """
    return run_pickled(pickle.dumps((function, args)))


def run_pickled(job_bytes: bytes) -> Any:
    """:func:`run_in_process` of a job pickled beforehand (``pickle.dumps((function, args))``): what a Dask
    task carries, so the worker never unpickles the job (nor imports what it needs: TensorFlow)."""
    with tempfile.TemporaryDirectory(prefix="unet_tf-run-") as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(job_bytes)
        status = subprocess.call([sys.executable, "-m", __name__, str(job), str(result)])
        if not result.is_file():
            raise RuntimeError(f"the run's process ended (status {status}) before it finished")
        ok, value = pickle.loads(result.read_bytes())
    if not ok:
        raise value
    return value


def _exit_with_parent() -> None:
    """A daemon thread that ends this process as soon as its parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(3)

    threading.Thread(target=watch, name="unet_tf-parent-watch", daemon=True).start()


def _child_main(job: str, result: str) -> None:
    """Run the pickled job; write ``(True, value)`` or ``(False, exception)`` to ``result`` (atomically)."""
    _exit_with_parent()
    function, args = pickle.loads(Path(job).read_bytes())
    try:
        outcome = (True, function(*args))
    except Exception as exc:  # handed to the parent, which raises it
        outcome = (False, exc)
    with atomic_path(result) as tmp:
        tmp.write_bytes(pickle.dumps(outcome))


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
