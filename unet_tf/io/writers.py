"""Every file the package writes goes through here: atomic writes, masks, TIFFs, stacks, tiled BigTIFFs.

- :func:`atomic_path`: a temporary file beside the destination, renamed on
  success, so an interrupted run never leaves a half-written output.
- :func:`mask_dtype` / :func:`write_mask`: a mask of label values as TIFF or
  PNG, uint8 or uint16 when a value exceeds 255; :func:`write_tiff`: any
  (H, W) or (bands, H, W) array, with the pixel size ImageJ-style
  (:mod:`unet_tf.io.metadata`).
- Writers that never hold the whole output: :class:`StackWriter`, a
  multi-page TIFF written one page at a time; :class:`TiledTiffWriter` /
  :func:`write_tiled`, a tiled (Big)TIFF fed with bands of rows of any height
  (buffered up to one tile row, cut into tiles and handed to tifffile).

All writers are atomic: the file appears only when every page/row arrived; an
error or a short input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from unet_tf.errors import UserInputError, say_note
from unet_tf.io.images import TIFF_SUFFIXES
from unet_tf.io.metadata import needs_bigtiff, resolution_kwargs


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name keeps the suffix so format-sniffing writers work. On any
    error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise UserInputError(f"{path.parent}: cannot write here ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def mask_dtype(max_value: int) -> type:
    """uint8 when every class value fits in 8 bits, else uint16."""
    if max_value < 0 or max_value > 65535:
        raise ValueError(f"class value {max_value} does not fit in uint16")
    return np.uint8 if max_value <= 255 else np.uint16


def _tiff_write_kwargs(array: np.ndarray, pixel_size_um: float | None) -> dict:
    """tifffile arguments shared by the writers: BigTIFF when needed, pixel size."""
    from unet_tf.io.metadata import needs_bigtiff, resolution_kwargs

    return {"bigtiff": needs_bigtiff(array.nbytes), **resolution_kwargs(pixel_size_um)}


def write_mask(path: str | Path, mask: np.ndarray, pixel_size_um: float | None = None) -> Path:
    """Write a 2-D mask of label values as TIFF or PNG (uint8, or uint16 if needed).

    Args:
        path: str | Path, ``.tif``/``.tiff`` or ``.png``; written atomically.
        mask: (H, W) array of non-negative label values (<= 65535).
        pixel_size_um: float | None, pixel size stored in TIFF resolution tags
            the way ImageJ writes them (see ``unet_tf.io.metadata``); PNGs cannot
            carry it (said once). Default None (no size).
    """
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    mask = mask.astype(mask_dtype(int(mask.max(initial=0))), copy=False)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            kwargs = _tiff_write_kwargs(mask, pixel_size_um)
            tifffile.imwrite(tmp, mask, compression="zlib", photometric="minisblack", **kwargs)
        elif suffix == ".png":
            import cv2

            if pixel_size_um is not None:
                say_note("PNG masks carry no pixel size; write .tif to keep it", path)
            if not cv2.imwrite(str(tmp), mask):
                raise UserInputError(f"{path}: OpenCV could not write this PNG")
        else:
            raise UserInputError(f"{path}: masks are written as .tif or .png, not '{suffix}'")
    return path


def write_tiff(
    path: str | Path, array: np.ndarray, compression: str | None = "zlib", pixel_size_um: float | None = None
) -> Path:
    """Write an array as a TIFF atomically: (H, W) or (bands, H, W), any numeric dtype.

    Args:
        path: str | Path, the TIFF to write (BigTIFF when the data needs it).
        array: (H, W) or (bands, H, W) array; bands become pages.
        compression: str | None, tifffile compression name. Default "zlib".
        pixel_size_um: float | None, pixel size for the resolution tags. Default None.
    """
    import tifffile

    array = np.asarray(array)
    kwargs = _tiff_write_kwargs(array, pixel_size_um)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, photometric="minisblack", **kwargs)
    return Path(path)


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
        dtype: numpy dtype of every page (masks: ``unet_tf.io.writers.mask_dtype``).
        pixel_size_um: float | None, stored ImageJ-style (see :mod:`unet_tf.io.metadata`). Default None.
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
