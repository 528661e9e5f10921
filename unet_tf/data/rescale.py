"""Training images brought to one object scale (``data.object_diameter``), as Cellpose trains its models.

A data set that mixes magnifications (the 2018 Data Science Bowl nuclei are 10 to
100 px across) teaches one network many scales, and its boundary width, border
sigma and patch size fit none of them. With ``data.object_diameter`` set, each
labelled training and validation image of an instance target is resized by
``object_diameter / (median equivalent diameter of its objects)`` (image: area
averaging to shrink, bilinear to enlarge; labels and ctc markers: nearest), so
the model learns one scale; prediction brings every image to it
(:mod:`unet_tf.objects.scale`). An image without objects keeps its scale.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from unet_tf.data.labels import ignore_value_pixels, read_instances, read_markers, read_raw_image
from unet_tf.data.layouts import ArraySample, DatasetSpec, Sample
from unet_tf.data.splits import TrainingData
from unet_tf.errors import UserInputError
from unet_tf.objects.scale import GIVEN_LIMITS, instance_areas, median_diameter, resize, scaled_shape


def object_factor(instances: np.ndarray, diameter: float) -> float:
    """``diameter / median equivalent diameter`` of the objects of ``instances``, within
    :data:`~unet_tf.objects.scale.GIVEN_LIMITS`; 1.0 without objects."""
    found = median_diameter(instance_areas(instances))
    if found is None:
        return 1.0
    low, high = GIVEN_LIMITS
    return float(min(max(diameter / found, low), high))


def rescaled_sample(sample: Sample | ArraySample, spec: DatasetSpec, diameter: float) -> tuple[ArraySample, float]:
    """(``sample`` resized so its objects' median diameter is ``diameter`` px, as arrays; the factor)."""
    image, where = read_raw_image(sample)
    instances = read_instances(sample, spec)
    if instances.shape != image.shape:
        raise UserInputError(f"{where}: label size {instances.shape} differs from the image's {image.shape}")
    factor = object_factor(instances, diameter)
    ignored = ignore_value_pixels(sample, spec)
    if ignored is not None:  # keep the pixels that count nowhere
        instances = np.where(ignored, spec.ignore_value, instances)
    shape = scaled_shape(image.shape, factor)
    markers = read_markers(sample)
    return (
        ArraySample(
            name=f"{where} (x{factor:.3g})",
            image=resize(image, shape, "image"),
            label=resize(instances, shape, "nearest"),
            markers=None if markers is None else resize(markers, shape, "nearest"),
            source=sample.image if isinstance(sample, Sample) and sample.page is None else None,
        ),
        factor,
    )


def rescale_to_diameter(data: TrainingData, diameter: float | None, log: Callable[[str], None] = print) -> TrainingData:
    """``data`` with its training and validation samples resized to objects of ``diameter`` px (see the
    module docstring); ``data`` itself when ``diameter`` is None. Test samples stay files: prediction
    rescales them itself. The ctc ignore margin around unannotated markers is measured afterwards, on the
    resized objects (:func:`~unet_tf.data.labels.with_marker_margin`)."""
    if diameter is None:
        return data
    if data.spec.target != "instances":
        raise UserInputError(
            "`data.object_diameter`: needs an instance target (one id per object); a semantic class has no one "
            "object scale"
        )
    train, f_train = _rescaled(data.train, data.spec, diameter)
    val, f_val = (train, f_train) if data.val == data.train else _rescaled(data.val, data.spec, diameter)
    factors = np.asarray(f_train + f_val)
    log(
        f"object scale: every training image resized to objects of {diameter:g} px (factors "
        f"{factors.min():.3g}-{factors.max():.3g}, median {np.median(factors):.3g})"
    )
    return replace(data, train=train, val=val)


def _rescaled(samples: Sequence[Sample | ArraySample], spec: DatasetSpec, diameter: float) -> tuple[tuple, list]:
    pairs = [rescaled_sample(s, spec, diameter) for s in samples]
    return tuple(p[0] for p in pairs), [p[1] for p in pairs]
