"""One label reader for training, prediction and the ablation: label files -> class ids; images -> normalized arrays."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from unet_tf.data.layouts import ArraySample, DatasetSpec, Sample
from unet_tf.data.normalize import percentile_normalize, values_to_ids
from unet_tf.data.targets import (
    border_weights,
    ignore_from_markers,
    instance_target,
    marker_margin,
    object_areas,
    with_ignore,
)
from unet_tf.errors import UserInputError, say_note
from unet_tf.io.images import read_image, read_label, read_page


def _read_label(sample: Sample, path: Path) -> np.ndarray:
    return read_label(path) if sample.page is None else read_page(path, sample.page)


def _where(sample: Sample | ArraySample) -> str:
    """The label file, with its page for a stack, or the label array (as error messages name it)."""
    if isinstance(sample, ArraySample) or sample.page is None:
        return str(sample.labels[0]) if sample.labels else sample.name
    return f"{sample.labels[0]} page {sample.page + 1}"


def _label_arrays(sample: Sample | ArraySample) -> list[np.ndarray]:
    """The raw label image(s) of a sample (several for a dsb2018 case: one file per nucleus)."""
    if not sample.labels:
        raise UserInputError(f"{sample.name}: has no label")
    if isinstance(sample, ArraySample):
        return [np.asarray(sample.label)]
    arrays = [_read_label(sample, path) for path in sample.labels]
    for path, label in zip(sample.labels[1:], arrays[1:]):
        if label.shape != arrays[0].shape:
            raise UserInputError(f"{path}: size {label.shape} differs from the other masks {arrays[0].shape}")
    return arrays


def read_instances(sample: Sample | ArraySample, spec: DatasetSpec) -> np.ndarray:
    """The (H, W) int32 instance ids of a labelled sample: one id per object, 0 background.

    One label file holds the ids itself; several files (dsb2018) are one
    object each, numbered in file order (where two overlap, the later file
    wins, said once). A file whose only nonzero value forms several separate
    regions holds class values, not object ids: an error naming it. Regions
    are 8-connected: a thin diagonal object, or pixels touching at a corner,
    stay one object.
    """
    arrays = _label_arrays(sample)
    if len(arrays) > 1:
        out = np.zeros(arrays[0].shape, np.int32)
        overlap = 0
        for k, label in enumerate(arrays, 1):
            inside = label > 0
            overlap += int(np.count_nonzero(inside & (out > 0)))
            out[inside] = k
        if overlap:
            say_note("pixels of two nucleus masks overlap; the later file's id kept", f"{sample.name} ({overlap} px)")
        return out
    out = np.asarray(arrays[0]).astype(np.int32)
    if spec.ignore_value is not None:
        out[out == spec.ignore_value] = 0
    values = np.unique(out[out > 0])
    if values.size == 1 and ndimage.label(out > 0, structure=np.ones((3, 3), bool))[1] > 1:
        raise UserInputError(
            f"{_where(sample)}: every object has the same value {values[0]}: these look like class "
            "values, not one id per object (use `data.target` semantic, or label each object)"
        )
    return out


def read_markers(sample: Sample | ArraySample) -> np.ndarray | None:
    """The ctc TRA markers of a sample (every nucleus has one), or None."""
    if isinstance(sample, ArraySample) or sample.markers is None:
        return sample.markers
    return read_label(sample.markers) if sample.page is None else read_page(sample.markers, sample.page)


def _ignore(sample: Sample | ArraySample, spec: DatasetSpec, seg: np.ndarray | None) -> np.ndarray | None:
    """Pixels that count nowhere: around unannotated ctc markers, or the ``ignore_value`` pixels."""
    ignore = None
    markers = read_markers(sample)
    if markers is not None:
        seg = seg if seg is not None else read_instances(sample, spec)
        ignore = ignore_from_markers(seg, markers, spec.ignore_margin)
    extra = ignore_value_pixels(sample, spec)
    if extra is not None:
        ignore = extra if ignore is None else ignore | extra
    return ignore


def ignore_value_pixels(sample: Sample | ArraySample, spec: DatasetSpec) -> np.ndarray | None:
    """Where the sample's label holds ``spec.ignore_value`` (bool (H, W)); None without an ignore value."""
    return None if spec.ignore_value is None else _label_arrays(sample)[0] == spec.ignore_value


def with_marker_margin(spec: DatasetSpec, samples: Sequence[Sample | ArraySample]) -> DatasetSpec:
    """``spec`` with one ignore margin for all ``samples`` (the frames a run trains and validates on).

    The margin is :func:`unet_tf.data.targets.marker_margin` of every annotated
    object of the samples that have TRA markers (ctc); ``spec`` unchanged when
    none has markers, no frame annotates an object, or ``spec.ignore_margin``
    is already set.
    """
    marked = [s for s in samples if s.markers is not None]
    if spec.ignore_margin is not None or not marked:
        return spec
    margin = marker_margin(object_areas(read_instances(s, spec) for s in marked))
    return spec if math.isnan(margin) else replace(spec, ignore_margin=margin)


def read_class_ids(sample: Sample | ArraySample, spec: DatasetSpec) -> np.ndarray:
    """The (H, W) uint8 class-id mask of a labelled sample, whatever its layout; ``IGNORE_ID`` where ignored.

    ``values``: label values mapped to ids (others are an error naming the
    file); ``instances`` and ``union``: every label > 0 of every label file of
    the sample is class 1 (a dsb2018 case has one file per nucleus). For an
    instance target (``spec.target == "instances"``) the ids are background /
    interior / boundary of the objects (:func:`unet_tf.data.targets.instance_target`).
    Ignored pixels (unannotated nuclei of a partial ctc frame, grown by
    ``spec.ignore_margin``: see :func:`with_marker_margin`; ``ignore_value``)
    get ``IGNORE_ID``.
    """
    seg = None
    if spec.target == "instances":
        seg = read_instances(sample, spec)
        ids = instance_target(seg, spec.boundary_width)
    elif spec.label_mode == "values":
        label = _label_arrays(sample)[0]
        if spec.ignore_value is not None:
            label = np.where(label == spec.ignore_value, spec.class_values[0], label)
        ids = values_to_ids(label, spec.class_values, _where(sample))
    else:
        ids = np.any([label > 0 for label in _label_arrays(sample)], axis=0).astype(np.uint8)
    return with_ignore(ids, _ignore(sample, spec, seg))


def read_border_weights(sample: Sample | ArraySample, spec: DatasetSpec, w0: float, sigma: float) -> np.ndarray:
    """Separation-border weights, float32 (H, W), of a sample's objects (:func:`~.targets.border_weights`)."""
    return border_weights(read_instances(sample, spec), w0, sigma)


def read_raw_image(sample: Path | Sample | ArraySample) -> tuple[np.ndarray, str]:
    """(the (H, W) raw pixel values of a sample, where they came from as error messages name it)."""
    if isinstance(sample, ArraySample):
        image, where = np.asarray(sample.image), sample.name
    else:
        path = sample.image if isinstance(sample, Sample) else Path(sample)
        page = sample.page if isinstance(sample, Sample) else None
        image, where = (
            (read_image(path), str(path)) if page is None else (read_page(path, page), f"{path} page {page + 1}")
        )
    if image.ndim != 2:
        raise UserInputError(f"{where}: expected a 2-D (H, W) image, got shape {image.shape}")
    return image, where


def load_image(
    sample: Path | Sample | ArraySample, pmin: float = 2.0, pmax: float = 98.0, clip: bool = False
) -> np.ndarray:
    """Read (or take) and percentile-normalize one image: (H, W) float32."""
    image, where = read_raw_image(sample)
    if not np.all(np.isfinite(image)):
        raise UserInputError(f"{where}: image holds NaN or infinite values")
    return percentile_normalize(image, pmin, pmax, clip=clip)


def load_pairs(
    samples: Sequence[Sample | ArraySample],
    spec: DatasetSpec,
    pmin: float = 2.0,
    pmax: float = 98.0,
    clip: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalized images (float32) and class-id masks (uint8) of labelled samples."""
    images, masks = [], []
    for sample in samples:
        image = load_image(sample, pmin, pmax, clip)
        mask = read_class_ids(sample, spec)
        if image.shape != mask.shape:
            raise UserInputError(
                f"{sample.labels[0]}: label size {mask.shape[1]}x{mask.shape[0]} differs from "
                f"image {sample.image.name if isinstance(sample, Sample) else sample.name} "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        images.append(image)
        masks.append(mask)
    return images, masks
