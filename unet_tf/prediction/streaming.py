"""Predict one image file in bands of rows: memory O(tile x W), whatever the image size.

:func:`predict_file_streaming` is :func:`~unet_tf.prediction.image.predict_image`
+ :func:`~unet_tf.prediction.outputs.write_outputs` +
:func:`~unet_tf.objects.morphometry.measure_objects` for one single-page image
file, without ever holding the image, its normalized copy, the probabilities or
the mask whole:

1. *Statistics pass*: the input is read in row windows
   (:class:`unet_tf.io.windows.WindowReader`; PNG/JPEG are whole reads anyway, and a TIFF
   stored as huge compressed blocks falls back to a whole read, said once).
   Integer images of up to 16 bits get EXACT percentiles from a histogram of
   every pixel (:func:`exact_percentiles`, equal to ``np.percentile``
   bit for bit), so the mask equals the whole-image path's exactly. Other
   dtypes (float, 32-bit) use a strided subsample of the rows
   (:func:`subsample_rows_stride`, at most ``SUBSAMPLE_PIXELS`` pixels).
2. *Prediction pass*: :func:`unet_tf.prediction.tiled.predict_bands` reads normalized rows one
   tile row at a time and yields finished rows; each band becomes class ids
   (``probabilities_to_ids``) and label values (``ids_to_values``), written
   straight into a tiled (Big)TIFF ``<name>_mask.tif``; with
   ``save_probabilities`` also ``<name>_prob.tif`` (the band layout of
   :func:`unet_tf.prediction.outputs.probability_bands`: one float32 page per class); objects are
   measured per band with objects crossing band edges merged
   (:class:`unet_tf.objects.bands.BandObjects`), their mean / max intensity from the raw
   rows of the same band (read again from the file), as the whole-image path
   measures them on the raw image.

:func:`should_stream` decides which images take this path without ``stream``:
those whose whole-image prediction (:func:`whole_image_bytes_per_pixel` x pixels)
would need more than half of the memory available now.

No overlay is written for a streamed image (said once): a colour image of the
whole size is what streaming avoids.

Nor is a streamed image resized to the model's object scale
(:mod:`unet_tf.objects.scale`): it is predicted at its own scale, with a note
naming it whenever ``predict.diameter`` or the pixel sizes ask for another
scale, or the scale would be estimated from a first pass.

Before anything is predicted, the uncompressed size of the outputs is compared
with the free space of the output folder; too little is a UserInputError naming
the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.data.normalize import ids_to_values, stretch_limits
from unet_tf.data.normalize import stretch as normalize_rows
from unet_tf.errors import UserInputError, say_note
from unet_tf.io.windows import WindowReader, image_dtype, image_shape
from unet_tf.io.writers import TiledTiffWriter, mask_dtype
from unet_tf.models.file import ModelInfo, min_size_for, tiling_options
from unet_tf.objects.bands import BandObjects
from unet_tf.objects.scale import applied, model_factor
from unet_tf.prediction.outputs import n_probability_bands, probability_bands
from unet_tf.prediction.tiled import ProgressFn, predict_bands, probabilities_to_ids

READ_ROWS = 512  # rows per read in the statistics pass
SUBSAMPLE_PIXELS = 4_000_000  # float images: percentiles from at most this many pixels
MEMORY_FRACTION = 0.5  # should_stream: the whole-image path may use at most this share of the available memory

# Transient bytes per pixel of the stages of the whole-image path, on top of the arrays it keeps
# (tracemalloc peaks on 2k x 2k and 4k x 4k images; see whole_image_bytes_per_pixel).
OVERLAY_BPP = 6  # RGB overlay + the channel-swapped copy cv2 encodes
OBJECTS_BPP = 9  # class mask (bool) + labels (int32) + row blocks
OBJECTS_OF_INSTANCES_BPP = 25  # renumbering the instance ids: np.unique sorts the whole image
INSTANCE_MODEL_BPP = 30  # the seeded watershed of an instance model
SPLIT_TOUCHING_BPP = 100  # distance-map watershed of split_touching


def whole_image_bytes_per_pixel(
    image_itemsize: int,
    n_outputs: int,
    *,
    mask_itemsize: int = 1,
    instances: str | None = None,
    overlay: bool = True,
    save_probabilities: bool = False,
) -> int:
    """Peak bytes per pixel of predicting one image whole (``predict_image`` + its files + its objects).

    Kept all along: the raw image read twice over (``2 x image_itemsize``),
    the float32 probabilities (``4 x n_outputs``), class ids (1) and mask
    (``mask_itemsize``), instance ids (int32, 4) when ``instances`` is
    ``"model"`` (an instance model) or ``"split"`` (``split_touching``). On top
    of that the largest stage: the percentile copy of the image, the overlay,
    the probability file (K' = 2 bands for a binary model), the objects, the
    instance watershed. Tile batches and TTA cost per tile row, not per pixel.

    Example: a uint16 image, binary model, defaults: 2*2 + 4 + 1 + 1 + max(2 + 1, 9, 6) = 19.
    """
    kept = 2 * image_itemsize + 4 * n_outputs + 1 + mask_itemsize + (4 if instances else 0)
    stages = [image_itemsize + 1, OBJECTS_OF_INSTANCES_BPP if instances else OBJECTS_BPP]
    if overlay:
        stages.append(OVERLAY_BPP)
    if save_probabilities:
        stages.append(4 * n_probability_bands(n_outputs) + 4)
    if instances == "model":
        stages.append(INSTANCE_MODEL_BPP)
    elif instances == "split":
        stages.append(SPLIT_TOUCHING_BPP)
    return kept + max(stages)


def available_memory() -> int:
    """Bytes of memory available now: ``MemAvailable`` of /proc/meminfo, else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def should_stream(
    path: str | Path, info: ModelInfo, config: PredictConfig = PredictConfig(), available: int | None = None
) -> tuple[bool, str]:
    """(whether the whole-image path would need more than MEMORY_FRACTION of ``available``, why).

    Reads the header only. Args: path (an image file), info (the model's
    ModelInfo), config (PredictConfig: overlay, probabilities, split_touching),
    available (bytes; default :func:`available_memory`). The reason names the
    file, the estimate (:func:`whole_image_bytes_per_pixel` x pixels) and the memory.
    """
    height, width = image_shape(path)
    k = info.n_outputs
    instances = "model" if info.target == "instances" else "split" if config.split_touching else None
    bpp = whole_image_bytes_per_pixel(
        np.dtype(image_dtype(path)).itemsize,
        k,
        mask_itemsize=np.dtype(mask_dtype(max(info.class_values))).itemsize,
        instances=instances,
        overlay=config.overlay,
        save_probabilities=config.save_probabilities,
    )
    available = available_memory() if available is None else available
    need = bpp * height * width
    reason = (
        f"{Path(path).name}: predicting it whole needs about {need / 1e9:.1f} GB ({bpp} B/px x {width}x{height}), "
        f"{'more' if need > MEMORY_FRACTION * available else 'less'} than {MEMORY_FRACTION:.0%} of the "
        f"{available / 1e9:.1f} GB available"
    )
    return need > MEMORY_FRACTION * available, reason


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
    """(lo, hi, exact) percentiles of a whole image read in row windows (one pass),
    with :func:`unet_tf.data.normalize.stretch_limits`'s fallback when they are equal.

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
    q4 = (0.0, *q, 100.0)  # the minimum and maximum too, for stretch_limits
    if exact:
        bottom, lo, hi, top = exact_percentiles(hist, offset, dtype, q4)
    else:
        bottom, lo, hi, top = np.percentile(np.concatenate(samples), q4)
    lo, hi = stretch_limits(lo, hi, bottom, top)
    return float(lo), float(hi), exact


# === Disk space ===


def output_bytes(shape: tuple[int, int], info: ModelInfo, config: PredictConfig) -> int:
    """Uncompressed bytes of the streamed outputs (mask, and probabilities twice: pages + final file)."""
    pixels = shape[0] * shape[1]
    total = pixels * np.dtype(mask_dtype(max(info.class_values))).itemsize
    if config.save_probabilities:
        total += 2 * pixels * 4 * n_probability_bands(info.n_outputs)
    return total


def check_disk_space(path: Path, out_dir: Path, needed: int) -> None:
    """UserInputError naming ``path`` when ``out_dir`` has less than ``needed`` bytes free."""
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if needed > free:
        raise UserInputError(
            f"{path}: its outputs need up to {needed / 1e9:.2f} GB (uncompressed) but {out_dir} has "
            f"{free / 1e9:.2f} GB free; free space or choose another `out_dir`"
        )


# === Prediction ===


def _probability_pages(out_dir: Path, name: str, shape, n_outputs: int) -> list[TiledTiffWriter]:
    """One temporary tiled TIFF per probability band (joined into ``<name>_prob.tif`` at the end)."""
    bands = n_probability_bands(n_outputs)
    return [TiledTiffWriter(out_dir / f".{name}_prob{i}.part.tif", shape, np.float32) for i in range(bands)]


def _join_pages(pages: list[Path], path: Path, shape: tuple[int, int], tile: int = 256) -> None:
    """Copy single-page tiled TIFFs into one multi-page tiled TIFF, band by band, atomically."""
    import tifffile

    from unet_tf.io.metadata import needs_bigtiff
    from unet_tf.io.writers import atomic_path, tiles_from_bands

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
        for writer, band in zip(writers["prob"], probability_bands(rows)):
            writer.write_band(band)


def say_not_rescaled(info: ModelInfo, config: PredictConfig, name: str, how: str = "in bands") -> None:
    """Say (a note naming the image) when the whole-image path would resize it: images predicted ``how`` (in
    bands, in blocks) are predicted at their own scale."""
    factor, source = model_factor(info, config)
    if factor is None:
        say_note(f"images predicted {how} are used at their own scale (no first pass to estimate it from)", name)
    elif applied(factor) != 1.0:
        say_note(
            f"images predicted {how} are not resized to the model's object scale (used at their own)",
            f"{name}: x{factor:.3g} from the {source}",
        )


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
    say_not_rescaled(info, config, Path(path).name)
    with WindowReader(path) as reader:
        shape = reader.shape
        check_disk_space(reader.path, out_dir, output_bytes(shape, info, config))
        norm = info.normalize
        lo, hi, exact = image_percentiles(reader, (norm.pmin, norm.pmax))
        if config.overlay:
            say_note("no overlay is written for images predicted in bands (streamed)")
        bands = predict_bands(
            predict_fn,
            lambda r0, r1: normalize_rows(reader.read(r0, r1), lo, hi, norm.clip),
            shape,
            **tiling_options(config, info),
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
    pages = _probability_pages(out_dir, name, shape, info.n_outputs) if config.save_probabilities else []
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
