"""One 2-D array in, its segmentation out: :func:`predict_image`, the one prediction path.

:func:`predict_image` stretches the raw image with the model's own
percentiles (``ModelInfo.normalize``), predicts tiled, blended probabilities
(:func:`unet_tf.prediction.tiled.predict_rows`), turns them into class ids and
the label values of the training data and, for an instance model or with
``split_touching``, into objects (:func:`unet_tf.objects.instances.instances_for`):
a :class:`Prediction`. It reads and writes no file; :mod:`unet_tf.prediction.files`
does that around it.

:func:`engine` gives the batch function and the ModelInfo of a Keras model
(compiled once per model) or of an :class:`unet_tf.prediction.onnx.OnnxModel`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.data.normalize import ids_to_values, percentile_limits, stretch
from unet_tf.errors import UserInputError
from unet_tf.io.writers import mask_dtype
from unet_tf.models.file import ModelInfo, min_size_for, read_info, tiling_options
from unet_tf.objects.instances import instances_for
from unet_tf.prediction.tiled import ProgressFn, make_predict_fn, predict_rows, probabilities_to_ids


@dataclass(frozen=True)
class Prediction:
    """The segmentation of one image.

    Attributes:
        probabilities: float32 (H, W, K): K = 1 (P(class 1)) for a binary
            model, else one channel per class.
        ids: uint8 (H, W) class ids 0..C-1.
        mask: (H, W) the class ids as the label values of the training data,
            uint8 (uint16 when a value exceeds 255: :func:`unet_tf.io.writers.mask_dtype`).
        instances: int32 (H, W) one id per object (0 background), for an
            instance model or with ``split_touching``; else None.
    """

    probabilities: np.ndarray
    ids: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None = None


_PREDICT_FNS: "weakref.WeakKeyDictionary[Any, Callable]" = weakref.WeakKeyDictionary()


def engine(model: Any) -> tuple[Callable[[np.ndarray], np.ndarray], ModelInfo]:
    """(batch -> probabilities function, ModelInfo) of a Keras model or of an object with ``.info``.

    The compiled function of a Keras model is kept for the model's lifetime,
    so calling :func:`predict_image` in a loop traces it once.
    """
    info = getattr(model, "info", None)
    if isinstance(info, ModelInfo):  # e.g. an ONNX model: callable on batches
        return model, info
    if model not in _PREDICT_FNS:
        _PREDICT_FNS[model] = make_predict_fn(model)
    return _PREDICT_FNS[model], read_info(model)


def _checked_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a non-empty 2-D array of finite values, else UserInputError."""
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise UserInputError(f"image: expected a non-empty 2-D (H, W) array, received shape {image.shape}")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise UserInputError("image: holds NaN or infinite values")
    return image


def predict_image(
    model: Any,
    image: np.ndarray,
    config: PredictConfig = PredictConfig(),
    *,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Prediction:
    """Segment one 2-D image at full resolution.

    Args:
        model: a model from :func:`unet_tf.load_model` (or returned by training).
        image: (H, W) array of any numeric dtype, raw (not normalized): the
            model's own percentile stretch is applied here.
        config: PredictConfig. Tiling and threshold settings; defaults as
            ``predict.py``.
        progress: optional ``progress(done_tiles, total_tiles)`` callback.
        **options: PredictConfig fields overriding ``config``: ``tile`` (512),
            ``overlap`` (64), ``batch_size`` (4), ``tta`` (False),
            ``threshold`` (0.5: foreground of binary models, interior seeds
            of instance models), ``min_size`` (None: the model's own
            ``ModelInfo.min_size``, else 0; smallest object in px),
            ``split_touching`` (False: split touching objects of a semantic
            model's classes into instances).

    Returns:
        :class:`Prediction` with probabilities, class ids and the label-value mask.

    Example:
        >>> model = unet_tf.load_model("runs/tem/best.keras")  # doctest: +SKIP
        >>> result = unet_tf.predict_image(model, unet_tf.read_image("scan.tif"), tile=256)  # doctest: +SKIP
        >>> result.mask.shape == result.ids.shape  # doctest: +SKIP
        True
    """
    config = replace(config, **options) if options else config
    predict_fn, info = engine(model)
    min_size = min_size_for(config, info)[0]
    image = _checked_image(image)
    norm = info.normalize
    lo, hi = percentile_limits(image, norm.pmin, norm.pmax)  # percentile_normalize's stretch, on rows:
    prob = predict_rows(  # no normalized float32 copy of the whole image is held
        predict_fn,
        lambda row0, row1: stretch(image[row0:row1], lo, hi, clip=norm.clip),
        image.shape,
        **tiling_options(config, info),
        progress=progress,
    )
    ids = probabilities_to_ids(prob, config.threshold)
    instances = instances_for(
        prob, ids, info.target, threshold=config.threshold, min_size=min_size, split=config.split_touching
    )
    values = np.asarray(info.class_values, mask_dtype(max(info.class_values)))  # the file's dtype, not int64
    return Prediction(prob, ids, ids_to_values(ids, values), instances)
