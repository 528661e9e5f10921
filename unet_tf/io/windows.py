"""Reading huge images in row windows: image headers and windows, not the whole image at once.

- :func:`image_shape` / :func:`image_dtype`: (H, W) and dtype from the header only.
- :class:`WindowReader` / :func:`read_window`: rows [row0, row1) of a single-page
  image. TIFF windows go through rasterio (GDAL reads only the strips/tiles a
  window touches and keeps recently decoded blocks in its cache). A TIFF whose
  blocks are huge and compressed (e.g. the whole image as one deflate strip)
  cannot be read in windows: it is read whole once and sliced, said once.
  PNG/JPEG/BMP are always read whole.

Their counterparts for writing, tiled (Big)TIFFs fed band by band, are in
:mod:`unet_tf.io.writers`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from unet_tf.errors import UserInputError, say_note
from unet_tf.io.images import (
    GDAL_CACHE_MB,
    TIFF_SUFFIXES,
    _existing_image,
    _open_tiff,
    _planes,
    _to_gray,
    gdal_env,
    page_count,
    read_image,
)

MAX_BLOCK_BYTES = 64 * 2**20


def _png_header(path: Path) -> tuple[int, int, np.dtype]:
    with open(path, "rb") as file:
        head = file.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        raise UserInputError(f"{path}: not a readable PNG (bad header)")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return height, width, np.dtype(np.uint16 if head[24] == 16 else np.uint8)


def _header(path: str | Path) -> tuple[int, int, np.dtype]:
    """(H, W, dtype) of an image file's first page without decoding pixels."""
    path = _existing_image(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return _png_header(path)
    if suffix not in TIFF_SUFFIXES:
        from PIL import Image  # JPEG/BMP: 8-bit as OpenCV reads them

        try:
            with Image.open(path) as im:
                width, height = im.size
        except OSError as exc:
            raise UserInputError(f"{path}: not a readable image ({exc})") from None
        return height, width, np.dtype(np.uint8)
    with _open_tiff(path) as tif:
        page = _planes(tif, path)[0]
        return int(page.imagelength), int(page.imagewidth), np.dtype(page.dtype)


def image_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file (first page of a stack), read from its header only."""
    height, width, _ = _header(path)
    return height, width


def image_dtype(path: str | Path) -> np.dtype:
    """The dtype :func:`unet_tf.io.images.read_image` returns for this file, from its header only."""
    return _header(path)[2]


class WindowReader:
    """Read row windows of one single-page image; use as a context manager.

    Args:
        path: str | Path, a single-page TIFF (windowed) or PNG/JPEG/BMP (whole).
        max_block_bytes: int, a compressed TIFF whose strips/tiles are larger
            than this is read whole once instead. Default 64 MiB.

    Attributes:
        shape: (H, W); dtype: numpy dtype of the returned rows.
    """

    def __init__(self, path: str | Path, max_block_bytes: int = MAX_BLOCK_BYTES):
        self.path = _existing_image(path)
        self._src = None
        self._whole = None
        if self.path.suffix.lower() not in TIFF_SUFFIXES:
            self._whole = read_image(self.path)
        elif page_count(self.path) > 1:
            raise UserInputError(f"{self.path}: is a multi-page TIFF stack; read it page by page")
        else:
            self._open_tiff(max_block_bytes)
        if self._whole is not None:
            self.shape, self.dtype = self._whole.shape, self._whole.dtype
        else:
            self.shape, self.dtype = (self._src.height, self._src.width), np.dtype(self._src.dtypes[0])

    def _open_tiff(self, max_block_bytes: int) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._src = rasterio.open(self.path)
        except RasterioIOError as exc:
            raise UserInputError(f"{self.path}: not a readable TIFF image ({exc})") from None
        rows, cols = self._src.block_shapes[0]
        block = rows * cols * self._src.count * np.dtype(self._src.dtypes[0]).itemsize
        # Room for ~3 rows of blocks across the width: overlapping bands reuse the edge rows.
        self._cache_mb = max(GDAL_CACHE_MB, 3 * block * -(-self._src.width // cols) // 2**20 + 1)
        if self._src.compression is not None and block > max_block_bytes:
            say_note(
                "stored as compressed blocks, which cannot be read in windows; reading it whole "
                "(re-save it tiled to stream it)",
                f"{self.path} ({rows}x{cols} px blocks)",
            )
            self.close()
            self._whole = read_image(self.path)

    def read(self, row0: int, row1: int) -> np.ndarray:
        """Rows [row0, row1) as (row1 - row0, W) in the file's dtype (RGB -> luminance)."""
        height = self.shape[0]
        if not 0 <= row0 < row1 <= height:
            raise ValueError(f"need 0 <= row0 < row1 <= {height}, got row0={row0}, row1={row1}")
        if self._whole is not None:
            return self._whole[row0:row1]
        from rasterio.windows import Window

        if self._src is None or self._src.closed:
            raise ValueError(f"WindowReader for {self.path} is closed")
        with gdal_env(self._cache_mb):
            data = self._src.read(window=Window(0, row0, self.shape[1], row1 - row0))
        return data[0] if data.shape[0] == 1 else _to_gray(np.moveaxis(data, 0, -1), self.path)

    def close(self) -> None:
        if self._src is not None:
            self._src.close()

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_window(path: str | Path, row0: int, row1: int) -> np.ndarray:
    """Rows [row0, row1) of a single-page image, (row1 - row0, W); see :class:`WindowReader`.

    Opens the file for each call: a caller reading many bands should keep one
    :class:`WindowReader` open instead.
    """
    with WindowReader(path) as reader:
        return reader.read(row0, row1)
