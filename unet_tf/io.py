"""Read microscopy images and label masks; write masks and probability maps.

Readers return ONE 2-D array in the file's true dtype (uint8, uint16, float32,
...), never rescaled or downsampled:

- TIFF (``.tif``, ``.tiff``) through rasterio (GDAL): 8/16/32-bit integer and
  float32. Multi-page TIFFs (stacks) are refused with a clear error: split the
  stack into one file per plane. Multi-band TIFFs are treated like PNGs below.
- PNG, JPEG, BMP through OpenCV with ``IMREAD_UNCHANGED`` (8- and 16-bit).

Colour input is reduced to gray: gray+alpha keeps the gray band, RGB(A) becomes
luminance (0.299 R + 0.587 G + 0.114 B, rounded back to the file's dtype, so a
gray image saved as RGB comes back exactly). This is said once per process.

Every writer is atomic: it writes a temporary file in the destination folder and
renames it, so an interrupted run never leaves a half-written output.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import UserInputError

TIFF_SUFFIXES = (".tif", ".tiff")
OPENCV_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + OPENCV_SUFFIXES

_LUMA = np.array([0.299, 0.587, 0.114])


def is_image_file(path: str | Path) -> bool:
    """True for a file whose suffix is one this module reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@functools.lru_cache(maxsize=None)
def _say_once(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _to_gray(bands: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, B) in R,G,B(,A) order -> (H, W) of the same dtype."""
    n = bands.shape[-1]
    if n == 2:
        _say_once(f"gray+alpha images are read as their gray band (alpha ignored), e.g. {path}")
        return np.ascontiguousarray(bands[..., 0])
    if n in (3, 4):
        _say_once(f"colour images are reduced to gray (luminance; alpha ignored), e.g. {path}")
        gray = bands[..., :3].astype(np.float64) @ _LUMA
        if np.issubdtype(bands.dtype, np.integer):
            info = np.iinfo(bands.dtype)
            gray = np.clip(np.rint(gray), info.min, info.max)
        return gray.astype(bands.dtype)
    raise UserInputError(f"{path}: has {n} channels; expected 1 (gray), 2 (gray+alpha), 3 or 4 (RGB/RGBA)")


def _read_tiff(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                pages = [s for s in src.subdatasets if s.startswith("GTIFF_DIR:")]
                if len(pages) > 1:
                    raise UserInputError(
                        f"{path}: is a multi-page TIFF ({len(pages)} pages); unet_tf reads one "
                        "2-D image per file: save each plane as its own file"
                    )
                data = src.read()  # (bands, H, W)
    except RasterioIOError as exc:
        raise UserInputError(f"{path}: not a readable TIFF image ({exc})") from None
    if data.shape[0] == 1:
        return data[0]
    return _to_gray(np.moveaxis(data, 0, -1), path)


def _read_opencv(path: Path) -> np.ndarray:
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise UserInputError(f"{path}: not a readable image (OpenCV could not decode it)")
    if data.ndim == 2:
        return data
    if data.shape[-1] >= 3:  # OpenCV gives B,G,R(,A)
        data = np.concatenate([data[..., 2::-1], data[..., 3:]], axis=-1)
    return _to_gray(data, path)


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as a 2-D array (H, W) in the file's own dtype.

    Raises UserInputError naming the file when it is missing, of an unknown
    kind, unreadable, a stack, or has an unsupported number of channels.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        image = _read_tiff(path)
    elif suffix in OPENCV_SUFFIXES:
        image = _read_opencv(path)
    else:
        raise UserInputError(
            f"{path}: unknown image type '{suffix}'; expected one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if image.ndim != 2 or image.size == 0:
        raise UserInputError(f"{path}: expected a 2-D image, got shape {image.shape}")
    return image


def read_label(path: str | Path) -> np.ndarray:
    """Read a label mask: a 2-D integer array (floats holding whole numbers are accepted)."""
    label = read_image(path)
    if not np.issubdtype(label.dtype, np.integer):
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise UserInputError(f"{path}: label image has non-integer values (dtype {label.dtype})")
        label = label.astype(np.int64)
    return label


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


def write_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write a 2-D mask of label values as TIFF or PNG (uint8, or uint16 if needed)."""
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    mask = mask.astype(mask_dtype(int(mask.max(initial=0))), copy=False)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(tmp, mask, compression="zlib")
        elif suffix == ".png":
            import cv2

            if not cv2.imwrite(str(tmp), mask):
                raise UserInputError(f"{path}: OpenCV could not write this PNG")
        else:
            raise UserInputError(f"{path}: masks are written as .tif or .png, not '{suffix}'")
    return path


def write_tiff(path: str | Path, array: np.ndarray, compression: str | None = "zlib") -> Path:
    """Write an array as a TIFF atomically: (H, W) or (bands, H, W), any numeric dtype."""
    import tifffile

    array = np.asarray(array)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, photometric="minisblack")
    return Path(path)
