"""Predict one image file in bands of rows: memory O(tile x W), whatever the image size.

:func:`predict_file_streaming` is ``predict_image`` + ``write_outputs`` +
``measure_objects`` for one single-page image file, without ever holding the
image, its normalized copy, the probabilities or the mask whole:

1. *Statistics pass*: the input is read in row windows
   (``tiff_stream.WindowReader``; PNG/JPEG are whole reads anyway, and a TIFF
   stored as huge compressed blocks falls back to a whole read, said once).
   Integer images of up to 16 bits get EXACT percentiles from a histogram of
   every pixel (:func:`exact_percentiles`, equal to ``np.percentile``
   bit for bit), so the mask equals the whole-image path's exactly. Other
   dtypes (float, 32-bit) use a strided subsample of the rows
   (:func:`subsample_rows_stride`, at most ``SUBSAMPLE_PIXELS`` pixels).
2. *Prediction pass*: ``inference.predict_bands`` reads normalized rows one
   tile row at a time and yields finished rows; each band becomes class ids
   (``probabilities_to_ids``) and label values (``ids_to_values``), written
   straight into a tiled (Big)TIFF ``<name>_mask.tif``; with
   ``save_probabilities`` also ``<name>_prob.tif`` (the band layout of
   ``prediction.probability_bands``: one float32 page per class); objects are
   measured per band with objects crossing band edges merged
   (``band_objects.BandObjects``), their mean / max intensity from the raw
   rows of the same band (read again from the file), as the whole-image path
   measures them on the raw image.

No overlay is written for a streamed image (said once): a colour image of the
whole size is what streaming avoids.

Before anything is predicted, the uncompressed size of the outputs is compared
with the free space of the output folder; too little is a UserInputError naming
the file.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .band_objects import BandObjects
from .config import PredictConfig
from .errors import UserInputError
from .inference import ProgressFn, predict_bands, probabilities_to_ids
from .io import mask_dtype, say_once
from .model_file import ModelInfo, min_size_for
from .preprocessing import ids_to_values
from .preprocessing import stretch as normalize_rows  # the stretch of percentile_normalize, on rows
from .tiff_stream import TiledTiffWriter, WindowReader, image_shape

READ_ROWS = 512  # rows per read in the statistics pass
SUBSAMPLE_PIXELS = 4_000_000  # float images: percentiles from at most this many pixels
STREAM_ABOVE_BYTES = 2**30  # should_stream: probabilities larger than this are streamed


def should_stream(path: str | Path, info: ModelInfo, limit_bytes: int = STREAM_ABOVE_BYTES) -> bool:
    """True when the (H, W, K) float32 probabilities of this image exceed ``limit_bytes``.

    Reads the header only. Args: path (an image file), info (the model's
    ModelInfo), limit_bytes (int, default 1 GiB: an 8k x 8k image with 4+ classes).
    """
    height, width = image_shape(path)
    k = 1 if info.n_classes == 2 else info.n_classes
    return height * width * k * 4 > limit_bytes


# === Normalization statistics ===


def exact_percentiles(hist: np.ndarray, offset: int, dtype: np.dtype, q: tuple[float, float]) -> np.ndarray:
    """``np.percentile(x, q)`` (linear method) of an integer image from its value histogram.

    Args:
        hist: int64 counts, ``hist[v - offset]`` = number of pixels of value v.
        offset: int, the value of ``hist[0]``.
        dtype: the image dtype (the interpolation runs in it, as numpy's does).
        q: (pmin, pmax) in percent.

    Returns: (2,) float64, bit-identical to ``np.percentile`` on the image.
    """
    n = int(hist.sum())
    virtual = (n - 1) * np.true_divide(np.asarray(q, np.float64), 100)
    previous = np.floor(virtual).astype(np.intp)
    following = np.minimum(previous + 1, n - 1)
    cumulative = np.cumsum(hist)
    a = (np.searchsorted(cumulative, previous, side="right") + offset).astype(dtype)
    b = (np.searchsorted(cumulative, following, side="right") + offset).astype(dtype)
    gamma = virtual - previous
    diff = b - a  # numpy's _lerp, step for step
    result = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe")
    return result


def subsample_rows_stride(shape: tuple[int, int], pixels: int = SUBSAMPLE_PIXELS) -> int:
    """Row stride s such that rows ``0, s, 2s, ...`` hold at most ``pixels`` pixels."""
    return max(1, math.ceil(shape[0] * shape[1] / pixels))


def image_percentiles(reader: WindowReader, q: tuple[float, float]) -> tuple[float, float, bool]:
    """(lo, hi, exact) percentiles of a whole image read in row windows (one pass).

    Integer images of at most 16 bits: exact (histogram); others: the rows
    ``0, s, 2s, ...`` with :func:`subsample_rows_stride`. Non-finite values are
    a UserInputError naming the file.
    """
    dtype, (height, width) = np.dtype(reader.dtype), reader.shape
    exact = dtype.kind in "ui" and dtype.itemsize <= 2
    offset = int(np.iinfo(dtype).min) if exact else 0
    hist = np.zeros(2 ** (8 * dtype.itemsize), np.int64) if exact else None
    stride = 1 if exact else subsample_rows_stride((height, width), SUBSAMPLE_PIXELS)
    samples = []
    for row0 in range(0, height, READ_ROWS):
        rows = reader.read(row0, min(row0 + READ_ROWS, height))
        if exact:
            values = rows.ravel().astype(np.int64) - offset if offset else rows.ravel()
            hist += np.bincount(values, minlength=hist.size)
            continue
        if dtype.kind == "f" and not np.all(np.isfinite(rows)):
            raise UserInputError(f"{reader.path}: holds NaN or infinite values")
        samples.append(rows[(-row0) % stride :: stride])
    if exact:
        lo, hi = exact_percentiles(hist, offset, dtype, q)
    else:
        lo, hi = np.percentile(np.concatenate(samples), q)
    return float(lo), float(hi), exact


# === Disk space ===


def output_bytes(shape: tuple[int, int], info: ModelInfo, config: PredictConfig) -> int:
    """Uncompressed bytes of the streamed outputs (mask, and probabilities twice: pages + final file)."""
    pixels = shape[0] * shape[1]
    total = pixels * np.dtype(mask_dtype(max(info.class_values))).itemsize
    if config.save_probabilities:
        total += 2 * pixels * 4 * info.n_classes
    return total


def check_disk_space(path: Path, out_dir: Path, needed: int) -> None:
    """UserInputError naming ``path`` when ``out_dir`` has less than ``needed`` bytes free."""
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if needed > free:
        raise UserInputError(
            f"{path}: its outputs need up to {needed / 1e9:.2f} GB (uncompressed) but {out_dir} has "
            f"{free / 1e9:.2f} GB free; free space or choose another --out"
        )


# === Prediction ===


def _probability_pages(out_dir: Path, name: str, shape, k: int) -> list[TiledTiffWriter]:
    """One temporary tiled TIFF per probability band (joined into ``<name>_prob.tif`` at the end)."""
    bands = 2 if k == 1 else k
    return [TiledTiffWriter(out_dir / f".{name}_prob{i}.part.tif", shape, np.float32) for i in range(bands)]


def _join_pages(pages: list[Path], path: Path, shape: tuple[int, int], tile: int = 256) -> None:
    """Copy single-page tiled TIFFs into one multi-page tiled TIFF, band by band, atomically."""
    import tifffile

    from .io import atomic_path
    from .tiff_meta import needs_bigtiff
    from .tiff_stream import tiles_from_bands

    def bands(page: Path):
        with WindowReader(page) as reader:
            for row0 in range(0, shape[0], READ_ROWS):
                yield reader.read(row0, min(row0 + READ_ROWS, shape[0]))

    bigtiff = needs_bigtiff(len(pages) * shape[0] * shape[1] * 4)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff) as writer:
        for page in pages:
            writer.write(
                tiles_from_bands(bands(page), shape, np.float32, tile),
                shape=shape,
                dtype=np.float32,
                tile=(tile, tile),
                compression="zlib",
                photometric="minisblack",
                metadata=None,
            )


def _write_band(
    row0: int,
    rows: np.ndarray,
    writers: dict[str, Any],
    objects: BandObjects | None,
    info: ModelInfo,
    config: PredictConfig,
    raw_rows: Callable[[int, int], np.ndarray],
) -> None:
    """One finished band of probabilities (image rows ``row0 ..``) -> mask rows, probability rows, objects.

    ``raw_rows(r0, r1)``: the raw image rows, for the objects' intensities.
    """
    ids = probabilities_to_ids(rows, config.threshold)
    table = np.asarray(info.class_values, writers["mask"].dtype)  # values in the mask dtype, not int64
    writers["mask"].write_band(ids_to_values(ids, table))
    if objects is not None:
        objects.add(ids, raw_rows(row0, row0 + len(rows)))
    if writers["prob"]:
        bands = [1 - rows[..., 0], rows[..., 0]] if rows.shape[-1] == 1 else np.moveaxis(rows, -1, 0)
        for writer, band in zip(writers["prob"], bands):
            writer.write_band(band)


def predict_file_streaming(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    info: ModelInfo,
    path: str | Path,
    out_dir: str | Path,
    name: str,
    config: PredictConfig = PredictConfig(),
    progress: ProgressFn | None = None,
    *,
    measure: bool = True,
) -> dict:
    """Segment one single-page image file band by band; write its mask (and probabilities).

    Args:
        predict_fn: batch -> probabilities (``prediction.engine(model)[0]``).
        info: the model's ModelInfo (normalization, classes, size divisor).
        path: str | Path, a single-page TIFF (read in row windows) or PNG/JPEG.
        out_dir: str | Path, where ``<name>_mask.tif`` (and ``<name>_prob.tif``) go.
        name: str, the output stem.
        config: PredictConfig; ``overlay`` is ignored (no overlay when streaming).
        progress: optional ``progress(done_tiles, total_tiles)``.
        measure: bool, compute the object table. Default True.

    Returns:
        dict: ``shape`` (H, W), ``objects`` (rows as ``measure_objects``; [] without ``measure``),
        ``percentiles`` (lo, hi), ``exact_percentiles`` (bool), ``outputs``
        (paths written), ``seconds``.
    """
    t0, out_dir = time.perf_counter(), Path(out_dir)
    with WindowReader(path) as reader:
        shape = reader.shape
        check_disk_space(reader.path, out_dir, output_bytes(shape, info, config))
        norm = info.normalize
        lo, hi, exact = image_percentiles(reader, (norm.pmin, norm.pmax))
        if config.overlay:
            say_once("no overlay is written for images predicted in bands (streamed)")
        bands = predict_bands(
            predict_fn,
            lambda r0, r1: normalize_rows(reader.read(r0, r1), lo, hi, norm.clip),
            shape,
            tile=config.tile,
            overlap=config.overlap,
            batch_size=config.batch_size,
            size_divisor=info.size_divisor,
            tta=config.tta,
            progress=progress,
        )
        size = min_size_for(config, info)[0]
        table = BandObjects(info.class_names, shape[1], image_name=name, pixel_size=config.pixel_size, min_size=size)
        objects = table if measure else None
        outputs = _stream_outputs(bands, out_dir, name, shape, info, config, objects, reader.read)
    return {
        "shape": shape,
        "objects": objects.rows() if measure else [],
        "percentiles": (lo, hi),
        "exact_percentiles": exact,
        "outputs": outputs,
        "seconds": time.perf_counter() - t0,
    }


def _stream_outputs(
    bands,
    out_dir: Path,
    name: str,
    shape,
    info: ModelInfo,
    config: PredictConfig,
    objects: BandObjects | None,
    raw_rows: Callable[[int, int], np.ndarray],
) -> list[Path]:
    """Drain ``bands`` into the mask (and probability) writers; the paths written."""
    mask_path = out_dir / f"{name}_mask.tif"
    k = 1 if info.n_classes == 2 else info.n_classes
    pages = _probability_pages(out_dir, name, shape, k) if config.save_probabilities else []
    try:
        with contextlib.ExitStack() as stack:  # every writer sees an error and then leaves no file
            mask = stack.enter_context(
                TiledTiffWriter(mask_path, shape, mask_dtype(max(info.class_values)), pixel_size_um=config.pixel_size)
            )
            writers = {"mask": mask, "prob": [stack.enter_context(page) for page in pages]}
            for row0, rows in bands:
                _write_band(row0, rows, writers, objects, info, config, raw_rows)
        if not pages:
            return [mask_path]
        prob_path = out_dir / f"{name}_prob.tif"
        _join_pages([p.path for p in pages], prob_path, shape)
        return [mask_path, prob_path]
    finally:
        for page in pages:
            page.path.unlink(missing_ok=True)
