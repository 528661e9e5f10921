"""Pure NumPy preprocessing: percentile contrast stretching and label mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import UserInputError


def percentile_normalize(
    x: np.ndarray,
    pmin: float = 2.0,
    pmax: float = 98.0,
    axis: int | tuple[int, ...] | None = None,
    clip: bool = False,
    eps: float = 1e-20,
) -> np.ndarray:
    """Stretch ``x`` so its ``pmin`` percentile maps to 0 and ``pmax`` to 1.

    Computed over the whole image (``axis=None``), once per image; the result is
    float32 of the same shape. With ``clip`` values are limited to [0, 1].
    (CSBDeep's ``normalize`` with our defaults; 1 / 99.8 is the other common pair.)
    """
    if not 0 <= pmin < pmax <= 100:
        raise ValueError(f"need 0 <= pmin < pmax <= 100, got pmin={pmin}, pmax={pmax}")
    x = np.asarray(x)
    lo, hi = np.percentile(x, [pmin, pmax], axis=axis, keepdims=True)
    return stretch(x, lo, hi, clip=clip, eps=eps)


def stretch(x: np.ndarray, lo, hi, clip: bool = False, eps: float = 1e-20) -> np.ndarray:
    """``(x - lo) / (hi - lo + eps)`` as float32: the stretch of :func:`percentile_normalize` with given
    percentiles (scalars, or arrays that broadcast against ``x``); clipped to [0, 1] with ``clip``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    out = (np.asarray(x).astype(np.float32) - lo.astype(np.float32)) / (hi - lo + eps).astype(np.float32)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def values_to_ids(label: np.ndarray, class_values: Sequence[int], source: str | Path = "label") -> np.ndarray:
    """Map label values to class ids 0..C-1 (uint8); any other value is an error.

    ``class_values[i]`` is the label value of class i. The error names ``source``
    and lists the unexpected values.
    """
    values = np.asarray(class_values, dtype=np.int64)
    present = np.unique(label)
    unknown = np.setdiff1d(present, values)
    if unknown.size:
        shown = ", ".join(str(v) for v in unknown[:10]) + (" ..." if unknown.size > 10 else "")
        raise UserInputError(
            f"{source}: label values {shown} are not among the class values "
            f"{', '.join(str(v) for v in values)} (set --class-values)"
        )
    order = np.argsort(values)
    ids = order[np.searchsorted(values[order], label)]
    return ids.astype(np.uint8)


def ids_to_values(ids: np.ndarray, class_values: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`values_to_ids`: class ids -> label values."""
    return np.asarray(class_values)[ids]
