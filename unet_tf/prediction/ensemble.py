"""Several models as one: the mean probability of K models (the folds of a cross-validation).

:func:`ensemble_predict_fn` turns K models into one batch function (float32
(B, T, T, 1) -> the mean of their float32 probabilities); :class:`Ensemble` adds the
one :class:`~unet_tf.models.file.ModelInfo` they agree on, so the ensemble goes
wherever a model goes (:func:`unet_tf.prediction.image.engine` takes any callable
with an ``info``): tiling, TTA, streaming, thresholds and objects are unchanged.
:func:`load_ensemble` loads the ``fold-*/best.keras`` of a cross-validation folder
(:mod:`unet_tf.ablation.folds`) once each.

The models must agree on what a probability means and how an image is fed
(:data:`MUST_AGREE`: classes, normalization, size divisor, target, object scale);
the rest of the info (test images, minimum object size) is the first model's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo, load_model_and_info, read_info
from unet_tf.prediction.tiled import make_predict_fn

PredictFn = Callable[[np.ndarray], np.ndarray]
MUST_AGREE = ("class_values", "class_names", "normalize", "size_divisor", "target", "object_diameter")
FOLD_FOLDER = re.compile(r"fold-(\d+)$")


def _batch_fn(model: Any) -> PredictFn:
    """A model's batch function: itself when it is already one (an object with an ``info``, e.g. ONNX)."""
    return model if isinstance(getattr(model, "info", None), ModelInfo) else make_predict_fn(model)


def _info(model: Any) -> ModelInfo:
    info = getattr(model, "info", None)
    return info if isinstance(info, ModelInfo) else read_info(model)


def ensemble_predict_fn(models: Sequence[Any]) -> PredictFn:
    """One batch function of ``models``: float32 (B, T, T, 1) -> the mean of their (B, T, T, K) float32 outputs.

    Each Keras model is compiled once (:func:`unet_tf.prediction.tiled.make_predict_fn`); the sum is taken in
    model order, so an ensemble of copies of one model gives exactly that model's probabilities.
    """
    if not models:
        raise UserInputError("`models`: an ensemble needs at least one model")
    functions = [_batch_fn(m) for m in models]

    def predict_fn(batch: np.ndarray) -> np.ndarray:
        total = np.array(functions[0](batch), dtype=np.float32)
        for function in functions[1:]:
            total += function(batch)
        return total / np.float32(len(functions))

    return predict_fn


def agreed_info(infos: Sequence[ModelInfo], names: Sequence[str]) -> ModelInfo:
    """The first info, after checking that every other agrees with it on :data:`MUST_AGREE`.

    Raises:
        UserInputError: naming the model that differs, the field and both values.
    """
    first = infos[0]
    for info, name in zip(infos[1:], names[1:]):
        for field in MUST_AGREE:
            mine, theirs = getattr(info, field), getattr(first, field)
            if mine != theirs:
                raise UserInputError(
                    f"{name}: {field} {mine!r} differs from {theirs!r} of {names[0]}; an ensemble's models must agree"
                )
    return first


class Ensemble:
    """K models predicting as one: callable on batches (their mean probability), with the agreed ``info``.

    Args:
        models: sequence of Keras models written by unet_tf (or objects with an ``info``, e.g. ONNX models).
        names: sequence of str, how errors name each model (default ``model 1``, ``model 2``, ...).

    Example:
        >>> ensemble = load_ensemble("runs/folds-tem")  # doctest: +SKIP
        >>> unet_tf.predict_image(ensemble, image).mask  # doctest: +SKIP
    """

    def __init__(self, models: Sequence[Any], names: Sequence[str] | None = None):
        models = list(models)
        names = list(names or (f"model {i}" for i in range(1, len(models) + 1)))
        if not models:
            raise UserInputError("`models`: an ensemble needs at least one model")
        self.info = agreed_info([_info(m) for m in models], names)
        self.models = tuple(models)
        self.names = tuple(names)
        self._predict_fn = ensemble_predict_fn(models)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._predict_fn(batch)


def fold_model_paths(folder: str | Path) -> list[Path]:
    """``fold-<k>/best.keras`` of a cross-validation folder, by fold number.

    Raises:
        UserInputError: no ``fold-<k>`` folders, or one without ``best.keras`` (unfinished).
    """
    folder = Path(folder)
    folds = sorted(
        (int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else ()) if (m := FOLD_FOLDER.match(p.name))
    )
    if not folds:
        raise UserInputError(f"{folder}: no fold-<k> folders of a cross-validation (train.py --folds K writes them)")
    missing = [p.name for _, p in folds if not (p / "best.keras").is_file()]
    if missing:
        raise UserInputError(
            f"{folder}: {', '.join(missing)} has no best.keras (unfinished: run the same training command again)"
        )
    return [p / "best.keras" for _, p in folds]


def is_folds_folder(path: str | Path) -> bool:
    """True for a folder holding ``fold-<k>`` run folders (what ``weights`` may name instead of a file)."""
    path = Path(path)
    return path.is_dir() and any(FOLD_FOLDER.match(p.name) and p.is_dir() for p in path.iterdir())


def load_ensemble(folder: str | Path, precision: str = "float32") -> Ensemble:
    """The :class:`Ensemble` of a cross-validation folder's ``fold-*/best.keras``, each loaded once (computing in
    ``precision``, as :func:`unet_tf.models.file.load_model_and_info`)."""
    paths = fold_model_paths(folder)
    models = [load_model_and_info(p, precision=precision)[0] for p in paths]
    return Ensemble(models, [str(p) for p in paths])
