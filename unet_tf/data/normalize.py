"""Pure NumPy normalization: percentile contrast stretching (training and prediction) and label mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from unet_tf.errors import UserInputError


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
    When the two percentiles are equal (e.g. >= 98 % background zeros) the
    limits fall back as :func:`stretch_limits` says: sparse bright objects map
    to (0, 1], a constant image to zeros; nothing is divided by ``eps`` alone.
    """
    if not 0 <= pmin < pmax <= 100:
        raise ValueError(f"need 0 <= pmin < pmax <= 100, got pmin={pmin}, pmax={pmax}")
    x = np.asarray(x)
    lo, hi = percentile_limits(x, pmin, pmax, axis=axis)
    return stretch(x, lo, hi, clip=clip, eps=eps)


def percentile_limits(
    x: np.ndarray, pmin: float = 2.0, pmax: float = 98.0, axis: int | tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(lo, hi)`` that :func:`percentile_normalize` stretches ``x`` with (float64, keepdims over
    ``axis``): its ``pmin`` / ``pmax`` percentiles, with :func:`stretch_limits`'s fallback when equal."""
    bottom, lo, hi, top = np.percentile(x, [0.0, pmin, pmax, 100.0], axis=axis, keepdims=True)
    return stretch_limits(lo, hi, bottom, top)


def stretch_limits(lo, hi, bottom, top) -> tuple[np.ndarray, np.ndarray]:
    """The ``(lo, hi)`` to stretch with, float64, given the percentiles ``lo <= hi``
    and the image's minimum ``bottom`` and maximum ``top`` (scalars or arrays that
    broadcast together).

    ``hi > lo``: unchanged. Otherwise ``hi`` becomes ``top`` (sparse bright
    objects on a flat background: background -> 0, the brightest pixel -> 1); if
    that is still ``<= lo`` (flat top, e.g. >= 98 % saturated) ``lo`` becomes
    ``bottom``. Only a constant image keeps ``hi <= lo``, which :func:`stretch`
    maps to zeros. Training and prediction both go through this function.
    """
    lo, hi, bottom, top = (np.asarray(v, np.float64) for v in (lo, hi, bottom, top))
    hi = np.where(hi > lo, hi, top)
    lo = np.where(hi > lo, lo, bottom)
    return lo, hi


def stretch(x: np.ndarray, lo, hi, clip: bool = False, eps: float = 1e-20) -> np.ndarray:
    """``(x - lo) / (hi - lo + eps)`` as float32: the stretch of :func:`percentile_normalize` with given
    limits (scalars, or arrays that broadcast against ``x``; see :func:`stretch_limits`); clipped to
    [0, 1] with ``clip``. Where ``hi <= lo`` (a constant image) the result is 0, never ``x / eps``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    scale = np.where(hi > lo, hi - lo + eps, np.inf).astype(np.float32)
    out = (np.asarray(x).astype(np.float32) - lo.astype(np.float32)) / scale
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
            f"{', '.join(str(v) for v in values)} (set `data.class_values`)"
        )
    order = np.argsort(values)
    ids = order[np.searchsorted(values[order], label)]
    return ids.astype(np.uint8)


def ids_to_values(ids: np.ndarray, class_values: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`values_to_ids`: class ids -> label values."""
    return np.asarray(class_values)[ids]
