"""TIFF writers that never hold the whole output: stacks page by page, tiled (Big)TIFFs band by band.

All writers are atomic (``unet_tf.io.atomic_path``): the file appears only when
every page/row arrived; an error or a short input leaves nothing behind.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .io import atomic_path
from .tiff_meta import needs_bigtiff, resolution_kwargs


class _AtomicTiff:
    """Shared context-manager plumbing: a TiffWriter on a temporary file, renamed on success."""

    def _open(self, path: Path, bigtiff: bool):
        import tifffile

        self._atomic = atomic_path(path)
        tmp = self._atomic.__enter__()
        try:
            return tifffile.TiffWriter(tmp, bigtiff=bigtiff)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _finish(self, writer, body_error: BaseException | None, error: BaseException | None = None) -> None:
        """Close ``writer``; keep the file only when no error came from the body, the checks
        (``error``, raised here) or closing (raised here)."""
        try:
            writer.close()
        except Exception as exc:  # noqa: BLE001 - reported below, after cleanup
            error = error or exc
        failure = body_error or error
        self._atomic.__exit__(*((type(failure), failure, failure.__traceback__) if failure else (None,) * 3))
        if error is not None and body_error is None:
            raise error


def _cast_page(page: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``page`` as ``dtype``; integer targets must hold every value (no silent wrap)."""
    page = np.asarray(page)
    if np.issubdtype(dtype, np.integer) and page.dtype != dtype and page.size:
        info = np.iinfo(dtype)
        low, high = page.min(), page.max()
        if low < info.min or high > info.max:
            raise ValueError(f"{what} holds values {low}..{high}, outside {dtype}")
    return page.astype(dtype, copy=False)


class StackWriter(_AtomicTiff):
    """Write a multi-page TIFF one (H, W) page at a time; the file appears on a clean exit.

    Example:
        with StackWriter("out_mask.tif", n_pages=5, dtype=mask_dtype(2), pixel_size_um=0.5) as w:
            for page in iter_pages("in.tif"):
                w.append(predict(page))

    Args:
        path: str | Path, the TIFF to write.
        n_pages: int, the number of pages that will be appended (checked on exit;
            also decides BigTIFF).
        dtype: numpy dtype of every page (masks: ``unet_tf.io.mask_dtype``).
        pixel_size_um: float | None, stored ImageJ-style (see ``tiff_meta``). Default None.
        compression: str | None, tifffile compression. Default "zlib".
    """

    def __init__(self, path, n_pages: int, dtype, pixel_size_um: float | None = None, compression: str | None = "zlib"):
        if n_pages < 1:
            raise ValueError(f"n_pages must be >= 1, got n_pages={n_pages}")
        self.path, self.n_pages, self.dtype = Path(path), int(n_pages), np.dtype(dtype)
        self.pixel_size_um, self.compression = pixel_size_um, compression
        resolution_kwargs(pixel_size_um)  # validate early
        self.written, self._shape, self._writer = 0, None, None

    def __enter__(self) -> StackWriter:
        return self

    def append(self, page: np.ndarray) -> None:
        """Append one (H, W) page; every page must have the first page's shape."""
        number = self.written + 1
        page = _cast_page(page, self.dtype, f"page {number}")
        if page.ndim != 2 or (self._shape is not None and page.shape != self._shape):
            raise ValueError(f"page {number} has shape {page.shape}, expected {self._shape or '(H, W)'}")
        if number > self.n_pages:
            raise ValueError(f"page {number} is more than n_pages={self.n_pages}")
        if self._writer is None:
            self._shape = page.shape
            self._writer = self._open(self.path, needs_bigtiff(page.nbytes * self.n_pages))
        kwargs = resolution_kwargs(self.pixel_size_um, first_page=number == 1) or {"metadata": None}
        self._writer.write(page, compression=self.compression, photometric="minisblack", **kwargs)
        self.written = number

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer is None:
            if exc is None:
                raise ValueError(f"{self.path}: no page was appended (n_pages={self.n_pages})")
            return
        short = None
        if self.written != self.n_pages:
            short = ValueError(f"{self.path}: {self.written} pages appended, n_pages={self.n_pages}")
        self._finish(self._writer, exc, short)


def _row_tiles(rows: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Cut (tile, W) rows into (tile, tile) tiles left to right, zero-padding the last."""
    for x in range(0, rows.shape[1], tile):
        block = rows[:, x : x + tile]
        if block.shape[1] < tile:
            block = np.pad(block, ((0, 0), (0, tile - block.shape[1])))
        yield np.ascontiguousarray(block)


def tiles_from_bands(
    bands: Iterable[np.ndarray], shape: tuple[int, int], dtype, tile: int = 256
) -> Iterator[np.ndarray]:
    """Turn bands of rows (any heights, top to bottom) into (tile, tile) tiles in TIFF order.

    Rows are buffered until a full tile row is there, so memory is one band
    plus one tile row. The bands must add up to exactly ``shape[0]`` rows.

    Args:
        bands: iterable of (h, W) arrays, h >= 1, in order.
        shape: (H, W) of the whole image.
        dtype: numpy dtype of the tiles (integer bands must fit it).
        tile: int, tile height and width (multiple of 16). Default 256.
    """
    height, width = shape
    pending, done = None, 0  # pending: rows received but not yet tiled
    for number, band in enumerate(bands, start=1):
        band = _cast_page(band, np.dtype(dtype), f"band {number}")
        if band.ndim != 2 or band.shape[1] != width or band.shape[0] < 1:
            raise ValueError(f"band {number} has shape {band.shape}, expected (h, {width})")
        pending = band if pending is None else np.concatenate([pending, band])
        if done + len(pending) > height:
            raise ValueError(f"band {number} goes past row {height} (shape={shape})")
        while len(pending) >= tile:
            yield from _row_tiles(pending[:tile], tile)
            pending, done = pending[tile:], done + tile
    rows = done + (0 if pending is None else len(pending))
    if rows != height:
        raise ValueError(f"bands gave {rows} rows, expected {height} (shape={shape})")
    if pending is not None and len(pending):
        yield from _row_tiles(np.pad(pending, ((0, tile - len(pending)), (0, 0))), tile)


def _tiled_kwargs(shape, dtype, tile, pixel_size_um, compression) -> dict:
    if tile % 16 or tile < 16:
        raise ValueError(f"tile must be a positive multiple of 16, got tile={tile}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got shape={shape}")
    return {
        "shape": tuple(shape),
        "dtype": np.dtype(dtype),
        "tile": (tile, tile),
        "compression": compression,
        "photometric": "minisblack",
        "metadata": None,
        **resolution_kwargs(pixel_size_um),
    }


def write_tiled(
    path: str | Path,
    bands: Iterable[np.ndarray],
    shape: tuple[int, int],
    dtype,
    tile: int = 256,
    pixel_size_um: float | None = None,
    compression: str | None = "zlib",
) -> Path:
    """Write a tiled (Big)TIFF from an iterable of row bands, atomically.

    Args:
        path: str | Path, the TIFF to write (BigTIFF when H * W * itemsize needs it).
        bands: iterable of (h, W) arrays top to bottom, adding up to H rows.
        shape: (H, W); dtype: numpy dtype written.
        tile: int, square tile size, a multiple of 16. Default 256.
        pixel_size_um: float | None, stored ImageJ-style. Default None.
        compression: str | None, tifffile compression. Default "zlib".
    """
    import tifffile

    kwargs = _tiled_kwargs(shape, dtype, tile, pixel_size_um, compression)
    bigtiff = needs_bigtiff(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff) as writer:
        writer.write(tiles_from_bands(bands, shape, dtype, tile), **kwargs)
    return Path(path)


_END = object()


class TiledTiffWriter(_AtomicTiff):
    """Push row bands into a tiled (Big)TIFF: ``with TiledTiffWriter(...) as w: w.write_band(rows)``.

    tifffile pulls tiles from an iterator, so the writing runs in a helper
    thread that pulls bands from a one-slot queue: the caller can feed several
    writers (mask, probabilities, instances) from one pass over an image.
    Memory: two bands plus one tile row. Arguments as :func:`write_tiled`.
    """

    def __init__(
        self,
        path,
        shape: tuple[int, int],
        dtype,
        tile: int = 256,
        pixel_size_um: float | None = None,
        compression: str | None = "zlib",
    ):
        self.path, self.shape, self.dtype, self.tile = Path(path), tuple(shape), np.dtype(dtype), tile
        self._kwargs = _tiled_kwargs(shape, dtype, tile, pixel_size_um, compression)
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._writer = self._thread = None
        self._rows = 0

    def __enter__(self) -> TiledTiffWriter:
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._writer = self._open(self.path, needs_bigtiff(nbytes))
        self._thread = threading.Thread(target=self._run, name=f"tiff-writer-{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def _bands(self) -> Iterator[np.ndarray]:
        while (band := self._queue.get()) is not _END:
            yield band

    def _run(self) -> None:
        try:
            tiles = tiles_from_bands(self._bands(), self.shape, self.dtype, self.tile)
            self._writer.write(tiles, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc  # the thread ends; _put stops waiting on a dead thread

    def _put(self, item) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def write_band(self, band: np.ndarray) -> None:
        """Queue the next (h, W) rows; raises the writer thread's error if it failed."""
        if self._error is not None:
            raise self._error
        band = np.asarray(band)
        if band.ndim != 2 or self._rows + band.shape[0] > self.shape[0]:
            raise ValueError(f"band of shape {band.shape} after {self._rows} rows goes past shape={self.shape}")
        self._rows += band.shape[0]
        self._put(band)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._put(_END)
        self._thread.join()
        error = self._error
        if error is None and self._rows != self.shape[0]:
            error = ValueError(f"{self.path}: bands gave {self._rows} rows, expected {self.shape[0]}")
        self._finish(self._writer, exc, error)
