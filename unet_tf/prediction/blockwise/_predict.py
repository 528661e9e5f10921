"""One block: its tiles of the global plan through the network, blended as the whole-image pass blends them.

:func:`predict_region` predicts the global tiles (:meth:`BlockPlan.tiles`) that
touch a box, reads their input through ``read_window`` (a window of the lazy
image; reflection at the IMAGE border by index gathers, as
:func:`~unet_tf.prediction.tiled.predict_tiled` does), adds each weighted tile
into a float32 buffer in the raster order of the global plan and divides by the
global weight sums. Each pixel thus receives the same float32 additions in the
same order as in :func:`~unet_tf.prediction.tiled.predict_bands`, so the
probabilities equal the whole-image ones (bit for bit where the network gives
a tile the same output in any batch).

:func:`window_statistics` and :func:`limits_from_statistics`: the image's
normalization percentiles as a reduction over blocks (per-block histograms of
integer images of up to 16 bits, summed: exact, as
:func:`~unet_tf.prediction.streaming.exact_percentiles`; other dtypes: a strided
sample of each block's rows).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from unet_tf.data.normalize import stretch_limits
from unet_tf.prediction.streaming import SUBSAMPLE_PIXELS, exact_percentiles
from unet_tf.prediction.tiled import axis_weight_sums, predict_batch
from unet_tf.prediction.tiling import blending_window, reflect_indices, window_line

from ._plan import BlockPlan, Box

WindowReader = Callable[[slice, slice], np.ndarray]  # (rows, columns) -> (h, w) normalized window


def _gathered(read_window: WindowReader, index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The input pixels at (rows, columns) index arrays: one read of their bounding window, then a gather."""
    rows, cols = index
    r0, c0 = int(rows.min()), int(cols.min())
    window = read_window(slice(r0, int(rows.max()) + 1), slice(c0, int(cols.max()) + 1))
    return np.asarray(window)[np.ix_(rows - r0, cols - c0)]


def predict_region(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    read_window: WindowReader,
    plan: BlockPlan,
    box: Box,
    *,
    batch_size: int = 4,
    tta: bool = False,
    window: str = "gaussian",
) -> np.ndarray:
    """Blended probabilities (y1 - y0, x1 - x0, K) float32 of ``box`` = (y0, y1, x0, x1).

    ``read_window(rows, cols)``: the NORMALIZED image in the window of two
    slices (any numeric dtype; cast to float32). Equal to
    ``predict_tiled(predict_fn, image, ...)[y0:y1, x0:x1]`` with the plan's
    tiling (within float32 rounding when the network's output for a tile
    depends on the other tiles of its batch).
    """
    (height, width), tile = plan.shape, plan.tile
    y0, y1, x0, x1 = box
    ys, xs = plan.tiles(box)
    row_index = np.concatenate([reflect_indices(y, tile, height) for y in ys])
    col_index = np.concatenate([reflect_indices(x, tile, width) for x in xs])
    pixels = _gathered(read_window, (row_index, col_index)).astype(np.float32, copy=False)
    line, weights = window_line(tile, window), blending_window(tile, window)[:, :, None]
    sum_y = axis_weight_sums(list(plan.ys), tile, height, line).astype(np.float32)[y0:y1]
    sum_x = axis_weight_sums(list(plan.xs), tile, width, line).astype(np.float32)[x0:x1]
    origins = [(a, b, y, x) for a, y in enumerate(ys) for b, x in enumerate(xs)]
    out, batch = None, np.zeros((batch_size, tile, tile, 1), np.float32)
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        for n, (a, b, _, _) in enumerate(chunk):
            batch[n, :, :, 0] = pixels[a * tile : (a + 1) * tile, b * tile : (b + 1) * tile]
        batch[len(chunk) :] = 0.0
        pred = predict_batch(predict_fn, batch, tta)
        if out is None:
            out = np.zeros((y1 - y0, x1 - x0, pred.shape[-1]), np.float32)
        for n, (_, _, y, x) in enumerate(chunk):
            _add(out, pred[n] * weights, y - y0, x - x0)
    out /= sum_y[:, None, None]
    out /= sum_x[None, :, None]
    return out


def _add(out: np.ndarray, weighted: np.ndarray, y: int, x: int) -> None:
    """``out[y:y+T, x:x+T] += weighted``, clipped to ``out`` (origins relative to it, may be negative)."""
    tile = weighted.shape[0]
    a0, a1, b0, b1 = max(y, 0), min(y + tile, out.shape[0]), max(x, 0), min(x + tile, out.shape[1])
    if a0 < a1 and b0 < b1:
        out[a0:a1, b0:b1] += weighted[a0 - y : a1 - y, b0 - x : b1 - x]


# === Normalization statistics as a reduction over blocks ===


def exact_dtype(dtype: np.dtype) -> bool:
    """Whether percentiles of this dtype come exactly from a histogram (integers of at most 16 bits)."""
    dtype = np.dtype(dtype)
    return dtype.kind in "ui" and dtype.itemsize <= 2


def window_statistics(raw: np.ndarray, total_pixels: int) -> np.ndarray:
    """One block's share of the image statistics: int64 value histogram (exact dtypes), else a float64
    sample of every s-th pixel (s such that the whole image gives at most ``SUBSAMPLE_PIXELS``)."""
    raw = np.asarray(raw)
    if exact_dtype(raw.dtype):
        offset = int(np.iinfo(raw.dtype).min)
        values = raw.ravel().astype(np.int64) - offset if offset else raw.ravel()
        return np.bincount(values, minlength=2 ** (8 * raw.dtype.itemsize)).astype(np.int64)
    stride = max(1, -(-total_pixels // SUBSAMPLE_PIXELS))
    return raw.ravel()[::stride].astype(np.float64)


def limits_from_statistics(parts: list[np.ndarray], dtype: np.dtype, q: tuple[float, float]) -> tuple[float, float]:
    """(lo, hi) stretch limits from every block's :func:`window_statistics` (with ``stretch_limits``' fallback)."""
    dtype, q4 = np.dtype(dtype), (0.0, *q, 100.0)
    if exact_dtype(dtype):
        bottom, lo, hi, top = exact_percentiles(np.sum(parts, axis=0), int(np.iinfo(dtype).min), dtype, q4)
    else:
        sample = np.concatenate(parts)
        if not np.all(np.isfinite(sample)):
            raise ValueError("the image holds NaN or infinite values")
        bottom, lo, hi, top = np.percentile(sample, q4)
    lo, hi = stretch_limits(lo, hi, bottom, top)
    return float(lo), float(hi)
