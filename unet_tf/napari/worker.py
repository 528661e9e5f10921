"""The model process: napari's process never imports TensorFlow or Keras; a child process runs the model.

Why: without a GPU driver napari draws with Mesa's software renderer (llvmpipe), which loads its own LLVM,
and TensorFlow ships another; in one process they crash (TensorFlow loaded after the canvas drew: a
segmentation fault on import; loaded first: while drawing, or ``free(): invalid pointer`` at exit).

:class:`ModelWorker` starts one ``spawn`` child on its first job and reuses it: the child loads each model once
(:mod:`unet_tf.napari.jobs`) and runs ``predict_image`` and ``finetune_on_corrections`` on arrays sent to it.
Progress ``(done, total)`` and log lines come back while a job runs; :meth:`ModelWorker.cancel` sets the event
the fine-tuning's ``stop`` reads. A failure comes back as one line (:class:`unet_tf.napari.logic.JobError`);
a child that died (a crash, out of memory) is reported the same way and started again by the next job.
The widgets share one worker (:func:`shared_worker`); it stops when the last widget closes, or at exit.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import pickle
import queue
import threading
from pathlib import Path
from typing import Any, Callable

from unet_tf.napari import jobs, logic

POLL_S = 0.2  # how often a waiting job checks that the child is still alive
CLOSE_S = 10.0  # how long closing waits for the child to finish its job before ending it

_SHARED: list[ModelWorker] = []  # the one worker the widgets of this napari process share (made on first use)


class ModelWorker:
    """One child process (``spawn``) running model jobs, one job at a time, started on first use."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._cancel = self._context.Event()
        self._lock = threading.Lock()
        self._jobs = itertools.count(1)
        self._process: Any = None
        self._requests: Any = None
        self._replies: Any = None
        self.users = 0
        atexit.register(self.close)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    def _start(self) -> None:
        self._requests, self._replies = self._context.Queue(), self._context.Queue()
        self._process = self._context.Process(
            target=jobs.serve, args=(self._requests, self._replies, self._cancel), name="unet_tf-model", daemon=True
        )
        self._process.start()

    def run(
        self, target: str, *args: Any, progress: Callable | None = None, log: Callable | None = None, **kwargs: Any
    ) -> Any:
        """Run the job ``"module:function"`` in the child with ``args`` / ``kwargs`` and return its value.

        ``progress(done, total)`` and ``log(line)`` are called here (the caller's thread) as the child reports.
        A failure in the child, or the child's death, raises :class:`~unet_tf.napari.logic.JobError` (one line).
        """
        with self._lock:
            if not self.alive:
                self._start()
            job = next(self._jobs)
            self._cancel.clear()
            self._requests.put((job, target, args, kwargs))
            return self._wait(job, self._process, self._replies, progress, log)

    def _wait(self, job: int, process: Any, replies: Any, progress: Callable | None, log: Callable | None) -> Any:
        while True:
            try:
                kind, which, value = replies.get(timeout=POLL_S)
            except queue.Empty:
                if not process.is_alive():
                    code = process.exitcode
                    if process is self._process:
                        self._forget()
                    raise logic.JobError(
                        f"error: the model process stopped (exit code {code}); it starts again with the next job"
                    ) from None
                continue
            if which != job:
                continue  # a reply of a job whose caller stopped waiting
            if kind == "progress" and progress is not None:
                progress(*value)
            elif kind == "log" and log is not None:
                log(value)
            elif kind == "done":
                return pickle.loads(value)
            elif kind == "error":
                raise logic.JobError(value)

    def segment(
        self, model: str | Path, image: Any, config: Any, name: str = "image", progress: Callable | None = None
    ) -> logic.Segmentation:
        """:func:`unet_tf.napari.logic.segment` of ``image`` by the model file or bundled name ``model``."""
        return self.run("unet_tf.napari.jobs:segment", str(model), image, config, name, progress=progress)

    def finetune(
        self,
        model: str | Path,
        images: list,
        labels: list,
        image: Any,
        config: Any,
        name: str = "image",
        progress: Callable | None = None,
        log: Callable | None = None,
        **options: Any,
    ) -> jobs.FinetuneResult:
        """Fine-tune ``model`` on the pairs (``options``: ``out``, ``steps``, ``max_minutes``) and re-segment
        ``image`` with the new model: :func:`unet_tf.napari.jobs.finetune`."""
        return self.run(
            "unet_tf.napari.jobs:finetune", str(model), images, labels, image, config, name,
            progress=progress, log=log, **options,
        )  # fmt: skip

    def cancel(self) -> None:
        """Ask the running job to stop (a fine-tuning ends at its next step)."""
        self._cancel.set()

    def attach(self) -> None:
        self.users += 1

    def detach(self) -> None:
        """One user (a widget) closed; the child stops when none is left."""
        self.users = max(0, self.users - 1)
        if not self.users:
            self.close()

    def close(self) -> None:
        """Stop the child: it ends after its job (cancelled), or is ended after :data:`CLOSE_S` seconds."""
        if self._process is None:
            return
        if self._process.is_alive():
            self._cancel.set()
            self._requests.put(None)
            self._process.join(CLOSE_S)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(CLOSE_S)
        self._forget()

    def _forget(self) -> None:
        for q in (self._requests, self._replies):
            q.close()
            q.cancel_join_thread()
        self._process = self._requests = self._replies = None


def shared_worker() -> ModelWorker:
    """The worker the widgets of this process share (one model process, each model loaded once)."""
    if not _SHARED:
        _SHARED.append(ModelWorker())
    return _SHARED[0]
