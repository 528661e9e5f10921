"""One label reader for training, prediction and the ablation: label files -> class ids; images -> normalized arrays."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserInputError
from ..io import read_image, read_label, read_page
from ..preprocessing import percentile_normalize, values_to_ids
from .layouts import ArraySample, DatasetSpec, Sample


def _read_label(sample: Sample, path: Path) -> np.ndarray:
    return read_label(path) if sample.page is None else read_page(path, sample.page)


def _where(sample: Sample) -> str:
    """The label file, with its page for a stack (as error messages name it)."""
    return str(sample.labels[0]) if sample.page is None else f"{sample.labels[0]} page {sample.page + 1}"


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
        return values_to_ids(_read_label(sample, sample.labels[0]), spec.class_values, _where(sample))
    merged = None
    for path in sample.labels:
        label = _read_label(sample, path)
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
        page = sample.page if isinstance(sample, Sample) else None
        image, where = (read_image(path), path) if page is None else (read_page(path, page), f"{path} page {page + 1}")
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
