"""Tiled, blended prediction of images of any size at full resolution.

The image is cut into square tiles of ONE fixed shape, the tiles go through the
network in fixed-size batches (so a compiled function never retraces), and the
tile predictions are blended with a smooth importance window that favours tile
centres, where the network saw the most context (nnU-Net's sliding window and
Gaussian importance map). Memory is bounded by the tiles in flight plus the
output buffers: the activations of the whole image never exist at once.

Padding (:func:`tiling_padding`): the image is reflect-padded (virtually:
border tiles are gathered with reflected indices) by a margin of
``overlap / 2`` rounded up to a multiple of ``size_divisor`` on every side, so
border pixels get as much context as pixels in the overlap between two tiles,
then at the bottom / right up to at least one tile and to a multiple of
``size_divisor``. Tile origins are multiples of ``size_divisor`` too, so every
tile sees the same pooling grid as a whole-image pass: a U-Net's max-pooling and
upsampling are only shift-equivariant for shifts by multiples of ``2**depth``,
and aligned tiles leave no seams from that source.

Pure functions: :func:`tile_starts`, :func:`plan_tiles`, :func:`tiling_padding`,
:func:`window_line`, :func:`blending_window`, :func:`reflect_indices`,
:func:`probabilities_to_ids`. TensorFlow is imported
only inside :func:`make_predict_fn`.
"""
from __future__ import annotations

import functools
import math
import sys
from typing import Callable, TextIO

import numpy as np

from .errors import UserInputError

PredictFn = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[int, int], None]

WINDOWS = ("gaussian", "cosine")


# === Tiling plan ===


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Origins of tiles of size ``tile`` covering ``[0, length)`` along one axis.

    Neighbouring tiles overlap by at least ``overlap`` px; the tiles are spread
    as evenly as possible, the first starts at 0 and the last ends exactly at
    ``length``. With ``length <= tile`` the answer is ``[0]`` (the caller pads).
    With ``align > 1`` every origin is a multiple of ``align``; then
    ``length - tile`` must be a multiple of ``align`` and ``overlap`` at most
    ``tile - align``. (nnU-Net's ``compute_steps_for_sliding_window``, in
    integer units of ``align``.)
    """
    if tile < 1 or align < 1:
        raise ValueError(f"tile and align must be positive, got tile={tile}, align={align}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    if length <= tile:
        return [0]
    span = length - tile
    if span % align:
        raise ValueError(f"length - tile = {span} is not a multiple of align={align}")
    max_step = (tile - overlap) // align  # in units of align
    if max_step < 1:
        raise ValueError(f"overlap {overlap} leaves no step of {align} px within tile {tile}")
    units = span // align
    gaps = -(-units // max_step)
    # round(i * units / gaps) for i = 0..gaps: steps are floor or ceil of
    # units / gaps <= max_step, exact integers, last = units.
    return [align * ((2 * i * units + gaps) // (2 * gaps)) for i in range(gaps + 1)]


def plan_tiles(shape: tuple[int, int], tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """(y, x) origins of the ``tile`` x ``tile`` tiles covering an image of ``shape`` (H, W)."""
    ys = tile_starts(shape[0], tile, overlap, align)
    xs = tile_starts(shape[1], tile, overlap, align)
    return [(y, x) for y in ys for x in xs]


def tiling_padding(
    shape: tuple[int, int], tile: int, overlap: int, size_divisor: int = 1
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` padding that :func:`predict_tiled` applies.

    ``margin = ceil(overlap / 2)`` rounded up to a multiple of ``size_divisor``
    on every side; bottom and right get more so that each padded side is at
    least ``tile`` and a multiple of ``size_divisor``.
    """
    margin = -(-math.ceil(overlap / 2) // size_divisor) * size_divisor
    pads = []
    for n in shape:
        padded = max(tile, -(-(n + 2 * margin) // size_divisor) * size_divisor)
        pads.append((margin, padded - n - margin))
    return pads[0], pads[1]


# === Blending window ===


@functools.lru_cache(maxsize=16)
def window_line(tile: int, kind: str = "gaussian", sigma_scale: float = 1 / 8, floor: float = 1e-4) -> np.ndarray:
    """One axis of :func:`blending_window`: (tile,) float64, read-only, cached.

    ``gaussian``: ``exp(-d**2 / (2 sigma**2))`` with ``sigma = sigma_scale *
    tile`` and ``d`` the distance of a pixel centre from the tile centre
    (nnU-Net's importance map; at the tile border it is exp(-8) = 3.4e-4).
    ``cosine``: the Hann window ``sin(pi (i + 1/2) / tile)**2``. Symmetric,
    scaled to a maximum of 1 and raised to at least ``floor``.
    """
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    centres = np.arange(tile, dtype=np.float64) + 0.5
    if kind == "gaussian":
        sigma = sigma_scale * tile
        line = np.exp(-((centres - tile / 2) ** 2) / (2 * sigma**2))
    elif kind == "cosine":
        line = np.sin(np.pi * centres / tile) ** 2
    else:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {kind!r}")
    line = np.maximum(line / line.max(), floor)
    line.flags.writeable = False
    return line


@functools.lru_cache(maxsize=16)
def blending_window(tile: int, kind: str = "gaussian", sigma_scale: float = 1 / 8, floor: float = 1e-4) -> np.ndarray:
    """Importance window (tile, tile) float32, read-only, cached.

    The outer product of :func:`window_line` with itself: maximum 1 at the
    centre, symmetric under rot90 and flips, at least ``floor**2`` (1e-8)
    everywhere, so tile borders still count where no other tile covers them
    (nnU-Net floors its map the same way). Being separable, the sum of the
    windows over a grid of tiles is the outer product of two 1-D sums, which is
    how :func:`predict_tiled` keeps its weights in O(H + W) memory.
    """
    line = window_line(tile, kind, sigma_scale, floor)
    window = np.outer(line, line).astype(np.float32)
    window.flags.writeable = False
    return window


def reflect_indices(start: int, size: int, n: int) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions ``start .. start+size-1``
    of its reflect-padded extension (``np.pad(mode="reflect")``, edge not repeated,
    repeated as often as needed)."""
    index = np.arange(start, start + size)
    if n == 1:
        return np.zeros(size, np.intp)
    period = 2 * (n - 1)
    index = index % period
    return np.where(index >= n, period - index, index)


# === Test-time augmentation: the 8 symmetries of the square ===


DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))  # (rot90 count, x-flip first)


def _dihedral(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """rot90 by ``k`` of (optionally x-flipped) (B, T, T, C) tiles."""
    if flip:
        batch = batch[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(batch, k, axes=(1, 2)))


def _dihedral_inverse(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Undo :func:`_dihedral` (a view, not a copy)."""
    batch = np.rot90(batch, -k, axes=(1, 2))
    if flip:
        batch = batch[:, :, ::-1]
    return batch


# === Prediction ===


def make_predict_fn(model) -> PredictFn:
    """A compiled ``model(x, training=False)``: float32 (B, T, T, 1) numpy -> float32 numpy.

    One ``tf.function`` traced once per input shape (tiles have one shape, so
    once); far cheaper per call than ``model.predict``, which rebuilds a
    dataset and a step function on every call. The ``tf.function`` is
    exposed as ``predict_fn.forward`` (e.g. to count its traces).
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(x):
        return tf.cast(model(x, training=False), tf.float32)

    def predict_fn(batch: np.ndarray) -> np.ndarray:
        return forward(tf.convert_to_tensor(batch, tf.float32)).numpy()

    predict_fn.forward = forward
    return predict_fn


def check_tiling(tile: int, overlap: int, size_divisor: int, batch_size: int = 1) -> None:
    """Raise :class:`UserInputError` unless the tiling settings fit a model of ``size_divisor``."""
    if size_divisor < 1 or tile < 1 or tile % size_divisor:
        raise UserInputError(
            f"tile {tile} must be a positive multiple of the model's size divisor {size_divisor}; "
            f"use e.g. {max(size_divisor, round(tile / size_divisor) * size_divisor)}"
        )
    if not 0 <= overlap <= tile - size_divisor:
        raise UserInputError(
            f"overlap {overlap} must be between 0 and tile - size divisor = {tile - size_divisor}"
        )
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")


def predict_tiled(
    predict_fn: PredictFn,
    image: np.ndarray,
    *,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    size_divisor: int = 16,
    tta: bool = False,
    window: str = "gaussian",
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Blended class probabilities (H, W, K) float32 for a 2-D image (H, W).

    ``image``: the normalized image, float32 (other dtypes are converted tile
    by tile). ``predict_fn`` maps a float32 batch (batch_size, tile, tile, 1)
    to (batch_size, tile, tile, K) probabilities; it is always called with
    exactly that shape (the last batch is zero-filled, its extra outputs
    dropped). The image is reflect-padded as :func:`tiling_padding` says (the
    padding is virtual: each border tile is gathered with reflected indices).
    Each tile's prediction is weighted by :func:`blending_window`; the weighted
    sum is divided by the sum of weights. ``tta`` averages the 8 rot90 / flip
    versions of every tile (8 calls per batch). ``progress(done, total)`` is
    called after each batch with counts of tiles.

    Memory: the (H, W, K) float32 result, one batch of tiles and its
    prediction, two 1-D weight sums; nothing else of image size.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array (H, W), got shape {image.shape}")
    check_tiling(tile, overlap, size_divisor, batch_size)
    height, width = image.shape
    (top, bottom), (left, right) = tiling_padding(image.shape, tile, overlap, size_divisor)
    ys = tile_starts(top + height + bottom, tile, overlap, size_divisor)
    xs = tile_starts(left + width + right, tile, overlap, size_divisor)
    origins = [(y - top, x - left) for y in ys for x in xs]  # in image coordinates, may be < 0
    total = len(origins)

    # Weight sums: the window is separable and the plan a grid, so the 2-D sum
    # is outer(sum_y, sum_x); only the image part is kept.
    line = window_line(tile, window)
    weights = blending_window(tile, window)[:, :, None]
    sum_y, sum_x = np.zeros(height), np.zeros(width)
    for sums, starts, pad, n in ((sum_y, ys, top, height), (sum_x, xs, left, width)):
        for s in starts:
            a, b = max(s - pad, 0), min(s - pad + tile, n)
            sums[a:b] += line[a - (s - pad) : b - (s - pad)]

    batch = np.zeros((batch_size, tile, tile, 1), np.float32)
    out: np.ndarray | None = None  # (H, W, K), allocated once K is known
    transforms = DIHEDRAL if tta else DIHEDRAL[:1]
    for first in range(0, total, batch_size):
        chunk = origins[first : first + batch_size]
        for i, (y, x) in enumerate(chunk):
            if 0 <= y and y + tile <= height and 0 <= x and x + tile <= width:
                batch[i, :, :, 0] = image[y : y + tile, x : x + tile]
            else:
                batch[i, :, :, 0] = image[np.ix_(reflect_indices(y, tile, height), reflect_indices(x, tile, width))]
        batch[len(chunk) :] = 0.0
        pred = None
        for k, flip in transforms:
            result = np.asarray(predict_fn(_dihedral(batch, k, flip)), dtype=np.float32)
            if result.ndim != 4 or result.shape[:3] != batch.shape[:3]:
                raise ValueError(
                    f"predict_fn returned shape {result.shape} for a batch of shape {batch.shape}; "
                    f"expected ({batch_size}, {tile}, {tile}, K)"
                )
            result = _dihedral_inverse(result, k, flip)
            pred = result.copy() if pred is None else np.add(pred, result, out=pred)
        if tta:
            pred /= len(transforms)
        if out is None:
            out = np.zeros((height, width, pred.shape[-1]), np.float32)
        for i, (y, x) in enumerate(chunk):
            y0, y1, x0, x1 = max(y, 0), min(y + tile, height), max(x, 0), min(x + tile, width)
            if y0 < y1 and x0 < x1:
                inside = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
                out[y0:y1, x0:x1] += pred[i][inside] * weights[inside]
        if progress is not None:
            progress(first + len(chunk), total)

    # every pixel is covered by a tile, so both sums are >= floor > 0
    out /= sum_y.astype(np.float32)[:, None, None]
    out /= sum_x.astype(np.float32)[None, :, None]
    return out


def probabilities_to_ids(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class ids (H, W) uint8 from probabilities (H, W, K) float.

    K = 1 (sigmoid, P(class 1)): ``prob > threshold``; K >= 2: argmax.
    """
    prob = np.asarray(prob)
    if prob.ndim != 3 or prob.shape[-1] < 1:
        raise ValueError(f"probabilities must be (H, W, K), got shape {prob.shape}")
    if prob.shape[-1] == 1:
        return (prob[..., 0] > threshold).astype(np.uint8)
    if prob.shape[-1] > 256:
        raise ValueError(f"{prob.shape[-1]} classes do not fit in uint8 ids")
    return np.argmax(prob, axis=-1).astype(np.uint8)


# === Progress ===


class ProgressBar:
    """A one-line text progress bar, usable as ``progress(done, total)``.

    On a terminal it redraws ``<label> tiles [#####.....] 12/24`` in place; when
    the stream is not a terminal (a log file, a pipe) it prints only the final
    line, once ``done == total`` or at :meth:`close`.
    """

    def __init__(self, label: str = "", width: int = 20, stream: TextIO | None = None):
        self.label = label
        self.width = width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last: tuple[int, int] | None = None
        self.closed = False

    def line(self, done: int, total: int) -> str:
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        prefix = f"{self.label} " if self.label else ""
        return f"{prefix}tiles [{bar}] {done}/{total}"

    def __call__(self, done: int, total: int) -> None:
        self.last = (done, total)
        if self.tty:
            self.stream.write("\r" + self.line(done, total))
            self.stream.flush()
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the line (prints the final state when not a terminal); idempotent."""
        if self.closed or self.last is None:
            return
        self.closed = True
        self.stream.write("\n" if self.tty else self.line(*self.last) + "\n")
        self.stream.flush()
