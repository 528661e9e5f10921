"""One label reader for training, prediction and the ablation: label files -> class ids; images -> normalized arrays."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserInputError
from ..io import read_image, read_label
from ..preprocessing import percentile_normalize, values_to_ids
from .layouts import ArraySample, DatasetSpec, Sample


def read_class_ids(sample: Sample | ArraySample, spec: DatasetSpec) -> np.ndarray:
    """The (H, W) uint8 class-id mask of a labelled sample, whatever its layout.

    ``values``: label values mapped to ids (others are an error naming the
    file); ``instances`` and ``union``: every label > 0 of every label file of
    the sample is class 1 (a dsb2018 case has one file per nucleus).
    """
    if not sample.labels:
        raise UserInputError(f"{sample.name}: has no label")
    if isinstance(sample, ArraySample):
        if spec.label_mode == "values":
            return values_to_ids(sample.label, spec.class_values, sample.labels[0])
        return (np.asarray(sample.label) > 0).astype(np.uint8)
    if spec.label_mode == "values":
        return values_to_ids(read_label(sample.labels[0]), spec.class_values, sample.labels[0])
    merged = None
    for path in sample.labels:
        label = read_label(path)
        if merged is not None and label.shape != merged.shape:
            raise UserInputError(f"{path}: size {label.shape} differs from the other masks {merged.shape}")
        merged = label > 0 if merged is None else merged | (label > 0)
    return merged.astype(np.uint8)


def load_image(sample: Path | Sample | ArraySample, pmin: float = 2.0, pmax: float = 98.0,
               clip: bool = False) -> np.ndarray:
    """Read (or take) and percentile-normalize one image: (H, W) float32."""
    if isinstance(sample, ArraySample):
        image, where = np.asarray(sample.image), sample.name
    else:
        path = sample.image if isinstance(sample, Sample) else Path(sample)
        image, where = read_image(path), path
    if image.ndim != 2:
        raise UserInputError(f"{where}: expected a 2-D (H, W) image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise UserInputError(f"{where}: image holds NaN or infinite values")
    return percentile_normalize(image, pmin, pmax, clip=clip)


def load_pairs(
    samples: Sequence[Sample | ArraySample], spec: DatasetSpec, pmin: float = 2.0, pmax: float = 98.0, clip: bool = False
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
