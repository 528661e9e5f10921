"""One 2-D array in, its segmentation out: :func:`predict_image`, the one prediction path.

:func:`predict_image` stretches the raw image with the model's own
percentiles (``ModelInfo.normalize``), predicts tiled, blended probabilities
(:func:`unet_tf.prediction.tiled.predict_rows`), turns them into class ids and
the label values of the training data and, for an instance model or with
``split_touching``, into objects (:func:`unet_tf.objects.instances.instances_for`):
a :class:`Prediction`. It reads and writes no file; :mod:`unet_tf.prediction.files`
does that around it.

Object scale (:mod:`unet_tf.objects.scale`): an image whose objects are not of
the model's typical diameter (``ModelInfo.object_diameter``) is resized to it
before the network, by a factor from ``predict.diameter``, else the pixel sizes
(``predict.pixel_size`` and ``ModelInfo.pixel_size_um``), else, for an instance
model, estimated from the objects of first passes at the image's own scale and
at 1/2 and 1/4 of it (:func:`unet_tf.objects.scale.consistent_estimate`), then
checked once by the objects found at the estimate (:func:`_refined`; a
semantic model's classes have no one object scale: it is used as it is). Class ids, objects,
``min_size``, the weak-seed rule and ``split_touching`` are computed at the
model's scale; the outputs are then brought back to the image's pixels
(probabilities bilinear, class ids and objects nearest).

:func:`engine` gives the batch function and the ModelInfo of a Keras model
(compiled once per model) or of an :class:`unet_tf.prediction.onnx.OnnxModel`.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.data.normalize import ids_to_values, percentile_limits, stretch
from unet_tf.errors import UserInputError, say_note
from unet_tf.io.writers import mask_dtype
from unet_tf.models.file import ModelInfo, foreground_threshold_for, min_size_for, read_info, tiling_options
from unet_tf.objects.instances import instances_for
from unet_tf.objects.labels import renumber
from unet_tf.objects.scale import (
    ESTIMATE_LIMITS,
    ESTIMATE_PASSES,
    ESTIMATE_TOLERANCE,
    MIN_PASS_SIDE,
    applied,
    consistent_estimate,
    implied_factor,
    model_factor,
    resize,
    scaled_shape,
)
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
        scale_factor: the image was resized by this factor (> 1 enlarged)
            for the network; 1.0 when used as it is.
        scale_source: where the factor came from: ``diameter``,
            ``pixel size``, ``estimate`` or ``none``
            (:data:`unet_tf.objects.scale.SCALE_SOURCES`).
    """

    probabilities: np.ndarray
    ids: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None = None
    scale_factor: float = 1.0
    scale_source: str = "none"


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


Segmented = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # probabilities, class ids, instances


def _segment(
    predict_fn: Callable, info: ModelInfo, image: np.ndarray, config: PredictConfig, min_size: int, progress
) -> Segmented:
    """(probabilities, class ids, instances or None) of ``image`` at the scale it is given in."""
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
        prob,
        ids,
        info.target,
        threshold=config.threshold,
        min_size=min_size,
        split=config.split_touching,
        foreground_threshold=foreground_threshold_for(config, info)[0],
    )
    return prob, ids, instances


def _scale(
    predict_fn: Callable, info: ModelInfo, image: np.ndarray, config: PredictConfig, min_size: int, progress, name
) -> tuple[float, str, Segmented | None]:
    """(factor applied to ``image``, its source, the segmentation at that factor when a first pass made it)."""
    factor, source = model_factor(info, config)
    if config.diameter is not None and source != "diameter":
        say_note("`predict.diameter` is not used: the model holds no object diameter (a model file before format 4)")
    if factor is not None:
        return applied(factor), source, None
    passes = {}  # factor -> segmentation at that factor (instances of an instance model)
    for first in ESTIMATE_PASSES:
        shape = scaled_shape(image.shape, first)
        if first != 1.0 and min(shape) < MIN_PASS_SIDE:
            break
        scaled = image if first == 1.0 else resize(image, shape, "image")
        passes[first] = _segment(predict_fn, info, scaled, config, min_size, progress)
    found = consistent_estimate(info.object_diameter, [(f, s[2]) for f, s in passes.items()], min_size)
    if found is None:
        say_note("no object found to estimate the object scale: the image is used at the model's scale", name)
        return 1.0, "none", passes[1.0]
    estimate, made_at = found
    if abs(estimate / made_at - 1.0) <= ESTIMATE_TOLERANCE:  # that pass is already at the right scale
        estimate = made_at
    estimate = applied(estimate, ESTIMATE_TOLERANCE)
    if estimate in passes:
        return estimate, "estimate", passes[estimate]
    factor, segmented = _refined(predict_fn, info, image, estimate, config, min_size, progress)
    return factor, "estimate", segmented


def _at(
    predict_fn: Callable, info: ModelInfo, image: np.ndarray, factor: float, config: PredictConfig, min_size, progress
) -> Segmented:
    """The segmentation of ``image`` resized by ``factor`` (at that scale)."""
    scaled = image if factor == 1.0 else resize(image, scaled_shape(image.shape, factor), "image")
    return _segment(predict_fn, info, scaled, config, min_size, progress)


def _refined(
    predict_fn: Callable, info: ModelInfo, image: np.ndarray, estimate: float, config: PredictConfig, min_size, progress
) -> tuple[float, Segmented]:
    """(factor, segmentation at it): the pass at the estimate or, when its objects imply a factor more than
    ESTIMATE_TOLERANCE away, one more pass at that factor, kept when its own objects agree with it better
    (a fixed-point step: the first passes never enlarge, so objects far below the model's diameter are
    under-counted by them and their estimate falls short)."""
    first = _at(predict_fn, info, image, estimate, config, min_size, progress)
    implied = implied_factor(info.object_diameter, estimate, first[2], min_size)  # estimates: instance models
    if implied is None or abs(math.log(implied / estimate)) <= math.log1p(ESTIMATE_TOLERANCE):
        return estimate, first
    low, high = ESTIMATE_LIMITS
    refined = applied(min(max(implied, low), high), ESTIMATE_TOLERANCE)
    if refined == estimate:
        return estimate, first
    second = _at(predict_fn, info, image, refined, config, min_size, progress)
    again = implied_factor(info.object_diameter, refined, second[2], min_size)
    if again is not None and abs(math.log(again / refined)) < abs(math.log(implied / estimate)):
        return refined, second
    return estimate, first


def _back(segmented: Segmented, shape: tuple[int, int]) -> Segmented:
    """A segmentation at the model's scale brought to ``shape``: probabilities bilinear, ids and objects
    nearest (objects that vanish leave no gap in the ids)."""
    prob, ids, instances = segmented
    prob = resize(prob, shape, "linear")
    ids = resize(ids, shape, "nearest")
    if instances is not None:
        instances = renumber(resize(instances, shape, "nearest"))
    return prob, ids, instances


def predict_image(
    model: Any,
    image: np.ndarray,
    config: PredictConfig = PredictConfig(),
    *,
    progress: ProgressFn | None = None,
    name: str = "image",
    **options: Any,
) -> Prediction:
    """Segment one 2-D image at full resolution, at the model's object scale.

    Args:
        model: a model from :func:`unet_tf.load_model` (or returned by training).
        image: (H, W) array of any numeric dtype, raw (not normalized): the
            model's own percentile stretch is applied here.
        config: PredictConfig. Tiling and threshold settings; defaults as
            ``predict.py``.
        progress: optional ``progress(done_tiles, total_tiles)`` callback
            (once per pass: the estimate of the object scale makes up to three first passes, at 1, 1/2 and 1/4 of the
            image's size, and one or two more at the estimated scale when none of them was at it).
        name: the image's name in notes. Default "image".
        **options: PredictConfig fields overriding ``config``: ``tile`` (512),
            ``overlap`` (64), ``batch_size`` (4), ``tta`` (False),
            ``threshold`` (0.5: foreground of binary models, interior seeds
            of instance models), ``foreground_threshold`` (None: an instance
            model's calibrated value, else 0.5), ``min_size`` (None: the model's own
            ``ModelInfo.min_size``, else 0; smallest object in px at the
            model's scale), ``split_touching`` (False: split touching objects
            of a semantic model's classes into instances), ``diameter``
            (None: the objects' diameter in px of this image) and
            ``pixel_size`` (None: µm per px of this image); see the module
            docstring for how they set the object scale.

    Returns:
        :class:`Prediction` with probabilities, class ids and the label-value mask, of the image's shape,
        and the scale factor used.

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
    factor, source, segmented = _scale(predict_fn, info, image, config, min_size, progress, name)
    if segmented is None:
        segmented = _at(predict_fn, info, image, factor, config, min_size, progress)
    if factor != 1.0:
        segmented = _back(segmented, image.shape)
    prob, ids, instances = segmented
    values = np.asarray(info.class_values, mask_dtype(max(info.class_values)))  # the file's dtype, not int64
    return Prediction(prob, ids, ids_to_values(ids, values), instances, factor, source)
