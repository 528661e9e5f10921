"""Tiled, blended prediction of images of any size at full resolution.

The image is cut into square tiles of ONE fixed shape, the tiles go through the
network in fixed-size batches (so a compiled function never retraces), and the
tile predictions are blended with a smooth importance window that favours tile
centres, where the network saw the most context (nnU-Net's sliding window and
Gaussian importance map). Memory is bounded by the tiles in flight plus the
output buffers: the activations of the whole image never exist at once.

Padding (:func:`~unet_tf.prediction.tiling.tiling_padding`): the image is reflect-padded (virtually:
border tiles are gathered with reflected indices) by a margin of
``overlap / 2`` rounded up to a multiple of ``size_divisor`` on every side, so
border pixels get as much context as pixels in the overlap between two tiles,
then at the bottom / right up to at least one tile and to a multiple of
``size_divisor``. Tile origins are multiples of ``size_divisor`` too, so every
tile sees the same pooling grid as a whole-image pass: a U-Net's max-pooling and
upsampling are only shift-equivariant for shifts by multiples of ``2**depth``,
and aligned tiles leave no seams from that source.

Streaming: :func:`predict_bands` runs the tile loop one band of tile rows at a
time, reading input rows through a callable and yielding finished output rows,
so memory is O(tile x W); :func:`predict_rows` stacks its bands into one array
(reading rows through any callable) and :func:`predict_tiled` is that over an array.

The tiling plan and the window are small pure functions of
:mod:`unet_tf.prediction.tiling` (:func:`~unet_tf.prediction.tiling.tile_starts`,
:func:`~unet_tf.prediction.tiling.tiling_padding`,
:func:`~unet_tf.prediction.tiling.blending_window`, ...); pure here:
:func:`probabilities_to_ids`.
TensorFlow is imported only inside :func:`make_predict_fn`.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterator, TextIO

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.prediction.tiling import blending_window, reflect_indices, tile_starts, tiling_padding, window_line

PredictFn = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[int, int], None]
RowReader = Callable[[int, int], np.ndarray]
ROWS_PER_CHUNK = 256  # row blocks of the whole-image helpers: temporaries O(256 x W), not O(H x W)


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
        raise UserInputError(f"overlap {overlap} must be between 0 and tile - size divisor = {tile - size_divisor}")
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")


def axis_weight_sums(starts: list[int], tile: int, n: int, line: np.ndarray) -> np.ndarray:
    """(n,) float64 sum of the 1-D windows of tiles at ``starts`` (image coordinates, may be < 0)."""
    sums = np.zeros(n)
    for s in starts:
        a, b = max(s, 0), min(s + tile, n)
        sums[a:b] += line[a - s : b - s]
    return sums


def predict_batch(predict_fn: PredictFn, batch: np.ndarray, tta: bool) -> np.ndarray:
    """(B, T, T, K) float32 prediction of a batch, averaged over the 8 symmetries with ``tta``."""
    transforms = DIHEDRAL if tta else DIHEDRAL[:1]
    pred = None
    for k, flip in transforms:
        result = np.asarray(predict_fn(_dihedral(batch, k, flip)), dtype=np.float32)
        if result.ndim != 4 or result.shape[:3] != batch.shape[:3]:
            raise ValueError(
                f"predict_fn returned shape {result.shape} for a batch of shape {batch.shape}; "
                f"expected ({batch.shape[0]}, {batch.shape[1]}, {batch.shape[2]}, K)"
            )
        result = _dihedral_inverse(result, k, flip)
        pred = result.copy() if pred is None else np.add(pred, result, out=pred)
    if tta:
        pred /= len(transforms)
    return pred


def _tiles(read_rows: RowReader, shape: tuple[int, int], ys: list[int], xs: list[int], tile: int):
    """Yield ``(row_index, y, x, tile_pixels)`` in raster order; one tile row of input at a time.

    The input rows of tile row ``j`` are ``reflect_indices(ys[j], tile, H)``: one
    ``read_rows`` call for the rows they span, then a gather (the virtual
    reflect padding); columns are gathered the same way per tile.
    """
    height, width = shape
    for j, y in enumerate(ys):
        if 0 <= y and y + tile <= height:
            band = np.asarray(read_rows(y, y + tile))
        else:
            index = reflect_indices(y, tile, height)
            lo = int(index.min())
            band = np.asarray(read_rows(lo, int(index.max()) + 1))[index - lo]
        if band.shape != (tile, width):
            raise ValueError(f"read_rows returned shape {band.shape}, expected ({tile} rows, {width})")
        for x in xs:
            if 0 <= x and x + tile <= width:
                yield j, y, x, band[:, x : x + tile]
            else:
                yield j, y, x, band[:, reflect_indices(x, tile, width)]


def predict_bands(
    predict_fn: PredictFn,
    read_rows: RowReader,
    shape: tuple[int, int],
    *,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    size_divisor: int = 16,
    tta: bool = False,
    window: str = "gaussian",
    progress: ProgressFn | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Blended probabilities of a 2-D image, yielded as finished row bands ``(row0, (h, W, K) float32)``.

    The tiles and blending of :func:`predict_tiled` (same plan, same batches,
    same sums in the same order, so the rows are bit-identical to its result),
    but one band of tile rows at a time: when the first tile of a new tile row
    comes out of the network, the rows above its origin are final, divided by
    the weight sums and yielded; the rows shared with the new tile row stay in
    the accumulator. Bands follow each other top to bottom and cover
    ``[0, H)`` exactly.

    Args:
        predict_fn: float32 (batch_size, tile, tile, 1) -> (batch_size, tile, tile, K).
        read_rows: ``read_rows(row0, row1)`` -> (row1 - row0, W) normalized rows
            of the image (any numeric dtype; cast to float32 per tile). Called
            once per tile row with ``0 <= row0 < row1 <= H``, at most ``tile``
            rows, top to bottom (rows shared by two tile rows are asked twice).
        shape: (H, W) of the image.
        tile, overlap, batch_size, size_divisor, tta, window, progress: as
            :func:`predict_tiled`.

    Memory: one tile row of input (tile, W), the accumulator (tile, W, K)
    float32, one batch and its prediction, the band being yielded.
    """
    height, width = (int(n) for n in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got shape={shape}")
    check_tiling(tile, overlap, size_divisor, batch_size)
    (top, bottom), (left, right) = tiling_padding((height, width), tile, overlap, size_divisor)
    ys = [y - top for y in tile_starts(top + height + bottom, tile, overlap, size_divisor)]
    xs = [x - left for x in tile_starts(left + width + right, tile, overlap, size_divisor)]
    line = window_line(tile, window)
    # The window is separable and the plan a grid: the 2-D weight sum is outer(sum_y, sum_x).
    sums = (
        axis_weight_sums(ys, tile, height, line).astype(np.float32),
        axis_weight_sums(xs, tile, width, line).astype(np.float32),
    )
    tiles = _tiles(read_rows, (height, width), ys, xs, tile)
    blend = _Blender(blending_window(tile, window)[:, :, None], sums, tile)
    return _band_loop(predict_fn, tiles, len(ys) * len(xs), blend, batch_size, tta, progress)


class _Blender:
    """The accumulator of :func:`predict_bands`: image rows ``[done, done + tile)`` x W x K."""

    def __init__(self, weights: np.ndarray, sums: tuple[np.ndarray, np.ndarray], tile: int):
        self.weights, (self.sum_y, self.sum_x), self.tile = weights, sums, tile
        self.height, self.width = len(self.sum_y), len(self.sum_x)
        self.done, self.buffer = 0, None

    def add(self, pred: np.ndarray, y: int, x: int) -> None:
        """Add one (tile, tile, K) prediction whose origin is (y, x); y >= done - tile."""
        if self.buffer is None:
            self.buffer = np.zeros((self.tile, self.width, pred.shape[-1]), np.float32)
        y0, y1, x0, x1 = max(y, 0), min(y + self.tile, self.height), max(x, 0), min(x + self.tile, self.width)
        if y0 < y1 and x0 < x1:
            inside = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
            self.buffer[y0 - self.done : y1 - self.done, x0:x1] += pred[inside] * self.weights[inside]

    def flush(self, stop: int) -> tuple[int, np.ndarray] | None:
        """Rows ``[done, stop)`` divided by the weight sums (no later tile may touch them)."""
        stop = min(stop, self.height)
        n = stop - self.done
        if n <= 0:
            return None
        rows = self.buffer[:n].copy()
        # every pixel is covered by a tile, so both sums are >= floor > 0
        rows /= self.sum_y[self.done : stop, None, None]
        rows /= self.sum_x[None, :, None]
        self.buffer[:-n] = self.buffer[n:].copy()
        self.buffer[-n:] = 0.0
        row0, self.done = self.done, stop
        return row0, rows


def _band_loop(predict_fn, tiles, total, blend: _Blender, batch_size, tta, progress):
    """Batches of tiles -> network -> blender; yields each band as soon as it is final."""
    batch = np.zeros((batch_size, blend.tile, blend.tile, 1), np.float32)
    done, current_row = 0, 0
    while done < total:
        chunk = []
        for i, (j, y, x, pixels) in zip(range(batch_size), tiles):
            batch[i, :, :, 0] = pixels
            chunk.append((j, y, x))
        batch[len(chunk) :] = 0.0
        pred = predict_batch(predict_fn, batch, tta)
        for i, (j, y, x) in enumerate(chunk):
            if j != current_row:  # the first tile of a new tile row: the rows above it are final
                band = blend.flush(y)
                if band is not None:
                    yield band
                current_row = j
            blend.add(pred[i], y, x)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    band = blend.flush(blend.height)
    if band is not None:
        yield band


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

    The bands of :func:`predict_bands` over the whole array, stacked. Memory:
    the (H, W, K) float32 result plus what :func:`predict_bands` holds.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array (H, W), got shape {image.shape}")
    return predict_rows(
        predict_fn,
        lambda row0, row1: image[row0:row1],
        image.shape,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        size_divisor=size_divisor,
        tta=tta,
        window=window,
        progress=progress,
    )


def predict_rows(predict_fn: PredictFn, read_rows: RowReader, shape: tuple[int, int], **options) -> np.ndarray:
    """The bands of :func:`predict_bands` (same arguments) stacked into one (H, W, K) float32 array.

    With ``read_rows`` normalizing raw rows on the fly, no normalized copy of the
    whole image is ever held: memory is the result plus one tile row.
    """
    out: np.ndarray | None = None
    for row0, rows in predict_bands(predict_fn, read_rows, shape, **options):
        if out is None:
            out = np.empty(tuple(shape) + rows.shape[-1:], np.float32)
        out[row0 : row0 + len(rows)] = rows
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
    ids = np.empty(prob.shape[:2], np.uint8)
    for row0 in range(0, len(ids), ROWS_PER_CHUNK):  # argmax gives int64: 8 B/px if done at once
        ids[row0 : row0 + ROWS_PER_CHUNK] = np.argmax(prob[row0 : row0 + ROWS_PER_CHUNK], axis=-1)
    return ids


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
