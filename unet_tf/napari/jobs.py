"""What the model process runs: the loop that serves :class:`unet_tf.napari.worker.ModelWorker`, and its jobs.

This module is imported by napari's process too (it names the jobs), but only the child process calls
:func:`serve` and the jobs; TensorFlow and Keras are imported inside them, so napari's process never loads them
(Mesa's software OpenGL and TensorFlow each bring an LLVM, and in one process they crash).

A job is a function ``fn(*args, progress, log, stop, **kwargs)``: ``progress(done, total)`` and ``log(line)``
go back to napari over the replies queue, ``stop()`` is true once the user pressed *Cancel*. What it returns
(numpy arrays, dataclasses, paths) is pickled back; an exception goes back as its one line
(:func:`unet_tf.napari.logic.message`), never a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pickle
import signal
from pathlib import Path
from typing import Any, Callable

from unet_tf.napari import logic

# the child's models, loaded once per file (path, modification time) or bundled name; the child's own state
_MODELS: dict[tuple[str, float], Any] = {}


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` gives napari: the new run (no Keras object) and the image re-segmented with it.

    Attributes:
        run_dir: the run folder; ``run_dir / "best.keras"`` is the new model.
        before, after: scores on the held-aside pairs before and after (empty without held pairs).
        n_train, n_held: pairs trained on and held aside.
        stopped: why training ended (``RunSummary.stopped``: ``"callback"`` when cancelled).
        segmentation: :class:`unet_tf.napari.logic.Segmentation` of the image by the new model.
        scores: the before / after line (``AP@0.5 0.812, SEG 0.774`` ...), written in the child.
    """

    run_dir: Path
    before: dict[str, float]
    after: dict[str, float]
    n_train: int
    n_held: int
    stopped: str | None
    segmentation: logic.Segmentation
    scores: str

    @property
    def model(self) -> Path:
        return self.run_dir / "best.keras"


def model_for(name_or_path: str | Path) -> Any:
    """The loaded model of a file or bundled name, loaded once (again when the file changed)."""
    text = str(name_or_path)
    mtime = Path(text).stat().st_mtime if Path(text).is_file() else 0.0
    key = (text, mtime)
    if key not in _MODELS:
        _MODELS[key] = logic.open_model(text)[0]
    return _MODELS[key]


def segment(model: str, image: Any, config: Any, name: str = "image", **hooks: Any) -> logic.Segmentation:
    """:func:`unet_tf.napari.logic.segment` with the model of a file or bundled name (cached)."""
    return logic.segment(model_for(model), image, config, progress=hooks.get("progress"), name=name)


def finetune(
    model: str, images: list, labels: list, image: Any, config: Any, name: str = "image", **options: Any
) -> FinetuneResult:
    """:func:`unet_tf.training.corrections.finetune_on_corrections` from ``model`` on the pairs, then ``image``
    re-segmented with the new model (kept loaded for the next job). ``options``: ``out``, ``steps``,
    ``max_minutes`` and the hooks ``progress``, ``log``, ``stop``."""
    from unet_tf.training.corrections import finetune_on_corrections, format_scores

    run = finetune_on_corrections(model, images, labels, predict=config, **options)
    best = run.run_dir / "best.keras"
    _MODELS[(str(best), best.stat().st_mtime)] = run.model
    seg = logic.segment(run.model, image, config, name=name)
    if run.n_held:
        scores = f"held-aside {run.n_held}: before {format_scores(run.before)}, after {format_scores(run.after)}"
    else:
        scores = "no pair held aside (three or more pairs give a before / after score)"
    return FinetuneResult(run.run_dir, run.before, run.after, run.n_train, run.n_held, run.summary.stopped, seg, scores)


def resolve(target: str) -> Callable:
    """The function ``"package.module:name"`` names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def hooks_for(fn: Callable, hooks: dict[str, Callable]) -> dict[str, Callable]:
    """The hooks ``fn`` takes (all of them when it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return hooks
    return {k: v for k, v in hooks.items() if k in params}


def serve(requests: Any, replies: Any, cancel: Any) -> None:
    """The child's loop: each request ``(job, target, args, kwargs)`` runs ``target`` and replies
    ``("progress", job, (done, total))``, ``("log", job, line)``, then ``("done", job, pickled value)`` or
    ``("error", job, line)``; ``None`` ends the loop. Ctrl+C is napari's to handle, not the child's."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (request := requests.get()) is not None:
        job, target, args, kwargs = request
        hooks = {
            "progress": lambda done, total, job=job: replies.put(("progress", job, (int(done), int(total)))),
            "log": lambda line, job=job: replies.put(("log", job, str(line))),
            "stop": cancel.is_set,
        }
        try:
            fn = resolve(target)
            value = pickle.dumps(fn(*args, **hooks_for(fn, hooks), **kwargs))  # here: a failure is a reply too
            replies.put(("done", job, value))
        except BaseException as exc:  # every failure is one line in the widget
            replies.put(("error", job, logic.message(exc)))
