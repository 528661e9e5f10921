"""Read microscopy images, label masks and stacks, whole or page by page.

Readers return ONE 2-D array in the file's true dtype (uint8, uint16, float32,
...), never rescaled or downsampled:

- TIFF (``.tif``, ``.tiff``) through rasterio (GDAL): 8/16/32-bit integer and
  float32. Multi-band TIFFs are treated like PNGs below. GDAL decodes LZW and
  tiled deflate faster than tifffile (measured ~1.5x and ~1.2x on 8k x 8k
  uint16), so single images and windows (:mod:`unet_tf.io.windows`) stay on rasterio.
- PNG, JPEG, BMP through OpenCV with ``IMREAD_UNCHANGED`` (8- and 16-bit).

Stacks (multi-page TIFF, OME-TIFF, ImageJ hyperstacks) are read through
tifffile, one page at a time (:func:`page_count`, :func:`iter_pages`,
:func:`read_page`): the planes are the file's full-resolution IFDs in file
order (C/Z/T flattened; reduced-resolution and mask IFDs are skipped). All
pages must share one size and dtype. :func:`read_image` refuses a stack.

Colour input is reduced to gray: gray+alpha keeps the gray band, RGB(A) becomes
luminance (0.299 R + 0.587 G + 0.114 B, rounded back to the file's dtype, so a
gray image saved as RGB comes back exactly). This is said once per run, with the
number of files it applied to at the end (:mod:`unet_tf.errors`).

Windows of huge images are read by :mod:`unet_tf.io.windows`; files are written
by :mod:`unet_tf.io.writers`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from unet_tf.errors import UserInputError, say_note

TIFF_SUFFIXES = (".tif", ".tiff")


OPENCV_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


IMAGE_SUFFIXES = TIFF_SUFFIXES + OPENCV_SUFFIXES


_LUMA = np.array([0.299, 0.587, 0.114])


def is_image_file(path: str | Path) -> bool:
    """True for a file whose suffix is one this module reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3 or 4) R,G,B(,A) -> (H, W) luminance of the same dtype (alpha ignored; integers rounded)."""
    gray = rgb[..., :3].astype(np.float64) @ _LUMA
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        gray = np.clip(np.rint(gray), info.min, info.max)
    return gray.astype(rgb.dtype)


def _to_gray(bands: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, B) in R,G,B(,A) order -> (H, W) of the same dtype."""
    n = bands.shape[-1]
    if n == 2:
        say_note("gray+alpha images are read as their gray band (alpha ignored)", path)
        return np.ascontiguousarray(bands[..., 0])
    if n in (3, 4):
        say_note("colour images are reduced to gray (luminance; alpha ignored)", path)
        return luminance(bands)
    raise UserInputError(f"{path}: has {n} channels; expected 1 (gray), 2 (gray+alpha), 3 or 4 (RGB/RGBA)")


GDAL_CACHE_MB = 64


def gdal_env(cache_mb: int = GDAL_CACHE_MB):
    """A ``rasterio.Env`` with GDAL's block cache capped at ``cache_mb`` MiB.

    GDAL's default cache (5 % of RAM) keeps every decoded block of a read, which
    doubled the peak RSS of reading a 20000 x 20000 uint8 TIFF (848 vs 457 MiB).
    """
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=int(cache_mb))


def _tiff_bands(path: Path) -> np.ndarray:
    """The bands of a one-page TIFF: (H, W) for one, else (H, W, bands)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings(), gdal_env():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                data = src.read()  # (bands, H, W)
    except RasterioIOError as exc:
        raise UserInputError(f"{path}: not a readable TIFF image ({exc})") from None
    return data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)


def _opencv_bands(path: Path) -> np.ndarray:
    """The channels of a PNG / JPEG / BMP file: (H, W), or (H, W, C) in R, G, B(, A) order."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise UserInputError(f"{path}: not a readable image (OpenCV could not decode it)")
    if data.ndim == 3 and data.shape[-1] >= 3:  # OpenCV gives B,G,R(,A)
        data = np.concatenate([data[..., 2::-1], data[..., 3:]], axis=-1)
    return data


def _read_tiff(path: Path) -> np.ndarray:
    data = _tiff_bands(path)
    return data if data.ndim == 2 else _to_gray(data, path)


def _read_opencv(path: Path) -> np.ndarray:
    data = _opencv_bands(path)
    return data if data.ndim == 2 else _to_gray(data, path)


def is_colour(path: str | Path) -> bool:
    """Whether an image file holds colour: three or more channels whose R, G and B differ (by more than one
    level on average; a gray image saved as RGB is not colour). A stack of pages is not colour."""
    path = _existing_image(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        if page_count(path) > 1:
            return False
        data = _tiff_bands(path)
    else:
        data = _opencv_bands(path)
    if data.ndim != 3 or data.shape[-1] < 3:
        return False
    rgb = data[..., :3].astype(np.float32)
    return float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean()) > 1.0


def _existing_image(path: str | Path) -> Path:
    """``path`` as a Path, or UserInputError when it is missing or of an unknown kind."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserInputError(f"{path}: unknown image type '{path.suffix}'; expected one of {', '.join(IMAGE_SUFFIXES)}")
    return path


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as a 2-D array (H, W) in the file's own dtype.

    Raises UserInputError naming the file when it is missing, of an unknown
    kind, unreadable, a stack (see :func:`iter_pages`), or has an unsupported
    number of channels.
    """
    path = _existing_image(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        pages = page_count(path)
        if pages > 1:
            raise UserInputError(
                f"{path}: is a multi-page TIFF stack ({pages} pages); this step reads one 2-D "
                "image per file: read stacks page by page (unet_tf.io.images.iter_pages / read_page)"
            )
        image = _read_tiff(path)
    else:
        image = _read_opencv(path)
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


def _open_tiff(path: Path):
    """An open ``tifffile.TiffFile``, or UserInputError naming the file."""
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise UserInputError(f"{path}: not a readable TIFF image ({exc})") from None


def _page_hw(page) -> tuple[int, int]:
    return int(page.imagelength), int(page.imagewidth)


def _note_hyperstack(tif, path: Path) -> None:
    """Say once when an OME/ImageJ file has more than one non-spatial axis."""
    if not (tif.is_ome or tif.is_imagej):
        return
    series = tif.series[0]
    extra = [f"{a}={n}" for a, n in zip(series.axes, series.shape) if a not in "YXS" and n > 1]
    if len(extra) > 1:
        kind = "hyperstacks are read as 2-D planes in file order (C/Z/T flattened)"
        say_note(kind, f"{path} ({series.axes}: {', '.join(extra)})")


def _planes(tif, path: Path, note: bool = True) -> list:
    """The full-resolution pages of an open TiffFile, checked to share one size and dtype.

    ``note``: say once that a hyperstack is flattened (readers that pick planes by axis pass False).
    """
    tif.pages.useframes = False  # full TiffPage objects (tags), never tifffile's light frames
    planes = [p for p in tif.pages if not int(p.subfiletype) & 0b101]  # skip reduced-res, masks
    if not planes:
        raise UserInputError(f"{path}: TIFF holds no full-resolution image page")
    images = int((tif.imagej_metadata or {}).get("images", 1)) if tif.is_imagej else 1
    if images > len(planes):
        raise UserInputError(
            f"{path}: ImageJ stack of {images} images stored with {len(planes)} TIFF page(s) "
            "(ImageJ does this above 4 GB); re-save it as OME-TIFF or BigTIFF"
        )
    first = planes[0]
    for number, page in enumerate(planes[1:], start=2):
        if _page_hw(page) != _page_hw(first) or page.dtype != first.dtype:
            (h, w), (h1, w1) = _page_hw(page), _page_hw(first)
            raise UserInputError(
                f"{path}: page {number} of {len(planes)} is {h}x{w} {page.dtype}, page 1 is "
                f"{h1}x{w1} {first.dtype}; all pages of a stack must share one size and dtype"
            )
    if note:
        _note_hyperstack(tif, path)
    return planes


def _series_planes(tif, path: Path) -> tuple[str, tuple[int, ...], list]:
    """(non-spatial axes, their lengths, planes in the C order of those axes) of an open TiffFile.

    The axes are tifffile's letters for the first series (OME, ImageJ or
    tifffile metadata): ``T`` time, ``C`` channel, ``Z`` depth, ``I``/``Q`` plain
    pages. A file whose first series does not hold every full-resolution page
    is read as a plain stack (axis ``I``) in file order.
    """
    planes = _planes(tif, path, note=False)
    series = tif.series[0]
    axes = "".join(a for a in series.axes if a not in "YXS")
    shape = tuple(int(n) for a, n in zip(series.axes, series.shape) if a not in "YXS")
    by_index = {page.index: page for page in planes}
    ordered = [None if page is None else by_index.get(page.index) for page in series.pages]
    if len(ordered) != len(planes) or any(page is None for page in ordered) or int(np.prod(shape)) != len(planes):
        return "I", (len(planes),), planes
    return axes, shape, ordered


def stack_axes(path: str | Path) -> tuple[str, tuple[int, ...]]:
    """The non-spatial axes of an image file and their lengths, read from the header only.

    Returns ``("TC", (5, 2))`` for a TCYX hyperstack, ``("I", (10,))`` for a plain
    10-page TIFF, ``("", ())`` for a single 2-D image (any format). Planes are
    numbered in the C order of these axes (see :func:`iter_stack_planes`).
    """
    path = _existing_image(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return "", ()
    with _open_tiff(path) as tif:
        axes, shape, planes = _series_planes(tif, path)
    return ("", ()) if len(planes) == 1 else (axes, shape)


def iter_stack_planes(path: str | Path, positions: Sequence[int]) -> Iterator[np.ndarray]:
    """Yield the planes at ``positions`` (0-based, C order of :func:`stack_axes`), each (H, W) in the file's dtype.

    Memory is bounded by one plane. A single 2-D image has the one position 0.
    """
    path = _existing_image(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        if list(positions) != [0]:
            raise ValueError(f"positions must be [0] for a single-image file, got {list(positions)} ({path})")
        yield read_image(path)
        return
    with _open_tiff(path) as tif:
        planes = _series_planes(tif, path)[2]
        for position in positions:
            yield _page_array(planes[position], path, position + 1)


def _page_array(page, path: Path, number: int) -> np.ndarray:
    """Decode one TIFF page to (H, W); RGB(A) pages become luminance."""
    try:
        data = page.asarray()
    except (ValueError, RuntimeError, OSError) as exc:  # missing codec, corrupt data
        raise UserInputError(f"{path}: page {number} cannot be decoded ({exc})") from None
    if data.ndim == 2:
        return data
    if page.axes == "SYX":
        data = np.moveaxis(data, 0, -1)
    elif page.axes != "YXS":
        raise UserInputError(f"{path}: page {number} has axes {page.axes}; expected a 2-D plane")
    return _to_gray(data, path)


def page_count(path: str | Path) -> int:
    """Number of 2-D pages in an image file: 1 for PNG/JPEG/BMP and single-page TIFF.

    Reads only the TIFF directory (no pixels) and checks that all pages share
    one size and dtype, so a bad stack fails before anything is computed.

    Args:
        path: str | Path, an image file.

    Raises:
        UserInputError: missing, unknown kind, unreadable, or pages that differ
            (naming the page, counted from 1).
    """
    path = _existing_image(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return 1
    with _open_tiff(path) as tif:
        return len(_planes(tif, path))


def iter_pages(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the pages of an image file one at a time, each (H, W) in the file's dtype.

    Memory is bounded by one page. PNG/JPEG/BMP and single-page TIFFs yield one
    array. Page sizes and dtypes are checked before the first page is decoded.

    Args:
        path: str | Path, an image file (multi-page TIFF, OME-TIFF, ImageJ stack, ...).
    """
    path = _existing_image(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        yield read_image(path)
        return
    with _open_tiff(path) as tif:
        for number, page in enumerate(_planes(tif, path), start=1):
            yield _page_array(page, path, number)


def read_page(path: str | Path, index: int) -> np.ndarray:
    """Read page ``index`` (0-based) of an image file as (H, W) in the file's dtype.

    Args:
        path: str | Path, an image file.
        index: int, 0 <= index < page_count(path).
    """
    path = _existing_image(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        if index != 0:
            raise ValueError(f"index must be 0 for a single-image file, got index={index} ({path})")
        return read_image(path)
    with _open_tiff(path) as tif:
        planes = _planes(tif, path)
        if not 0 <= index < len(planes):
            raise ValueError(f"index must be in [0, {len(planes)}) for {path}, got index={index}")
        return _page_array(planes[index], path, index + 1)
