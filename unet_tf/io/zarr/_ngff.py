"""NGFF 0.4 metadata (through ome-zarr-py's writer functions) and pyramid levels written window by window."""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np

NGFF_VERSION = "0.4"
ZARR_FORMAT = 2  # NGFF 0.4 is zarr v2 with "/" chunk keys
UNIT = "micrometer"
PYRAMID_MIN_SIDE = 512  # the pyramid stops when the longest side is at most this


def ngff_format():
    """ome-zarr-py's format object for the version we write."""
    from ome_zarr.format import FormatV04

    return FormatV04()


def new_array(group, name: str, shape: tuple[int, ...], dtype, chunk: int, *, overwrite: bool = False):
    """A level array in ``group``: chunks (chunk, chunk) on y/x clipped to the shape, 1 on a leading c axis.

    Zarr's default codec compresses; fill value 0; "/" chunk keys as NGFF 0.4 asks.
    """
    chunks = tuple(1 for _ in shape[:-2]) + tuple(max(1, min(chunk, int(n))) for n in shape[-2:])
    return group.create_array(
        name,
        shape=tuple(int(n) for n in shape),
        dtype=np.dtype(dtype),
        chunks=chunks,
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=overwrite,
    )


def level_shapes(shape: tuple[int, int], levels: int | None = None) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level: halved (rounded up) until the longest side <= 512, or ``levels`` in all."""
    shapes = [tuple(int(n) for n in shape)]
    while len(shapes) < (levels or 64) and max(shapes[-1]) > 1:
        if levels is None and max(shapes[-1]) <= PYRAMID_MIN_SIDE:
            break
        shapes.append(tuple((n + 1) // 2 for n in shapes[-1]))
    return shapes


def level_transforms(level: int, pixel_size_um: float | None, n_leading: int, centred: bool) -> list[dict]:
    """``scale`` (pixel size * 2**level on y/x) and, for 2x2 means, the ``translation`` of the pixel centres."""
    size = float(pixel_size_um) if pixel_size_um else 1.0
    lead = [1.0] * n_leading
    transforms = [{"type": "scale", "scale": lead + [size * 2**level] * 2}]
    if centred and level > 0:
        shift = size * (2**level - 1) / 2
        transforms.append({"type": "translation", "translation": [0.0] * n_leading + [shift, shift]})
    return transforms


def write_multiscale(group, n_levels: int, pixel_size_um: float | None, *, channel: bool, labels: bool, name: str):
    """The ``multiscales`` metadata of ``group`` (levels "0".."n-1"), axes (c,) y, x in micrometer."""
    from ome_zarr.writer import write_multiscales_metadata

    lead = 1 if channel else 0
    datasets = [
        {"path": str(k), "coordinateTransformations": level_transforms(k, pixel_size_um, lead, not labels)}
        for k in range(n_levels)
    ]
    axes = (["c"] if channel else []) + ["y", "x"]
    units = {"y": UNIT, "x": UNIT} if pixel_size_um else None
    write_multiscales_metadata(group, datasets, fmt=ngff_format(), axes=axes, axes_units=units, name=name)


def write_label_metadata(labels_group, name: str, properties: list[dict] | None = None) -> None:
    """``image-label`` metadata of ``labels/<name>`` (source: the image two levels up), listed once in ``labels``."""
    from ome_zarr.writer import write_label_metadata as ome_write_label_metadata

    if "image-label" in labels_group[name].attrs:
        return
    ome_write_label_metadata(labels_group, name, properties=properties, fmt=ngff_format(), source={"image": "../../"})


# === pyramid ===


def mean2(window: np.ndarray) -> np.ndarray:
    """2x2 means on the last two axes (an odd edge row/column averages the pixels it has); same dtype."""
    h, w = window.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (window.ndim - 2) + [(0, h % 2), (0, w % 2)]
        window = np.pad(window, pad, mode="edge")
    shape = window.shape[:-2] + (window.shape[-2] // 2, 2, window.shape[-1] // 2, 2)
    mean = window.astype(np.float64).reshape(shape).mean(axis=(-3, -1))
    if np.issubdtype(window.dtype, np.integer):
        info = np.iinfo(window.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(window.dtype)


def every_other(window: np.ndarray) -> np.ndarray:
    """Every other pixel on the last two axes (labels are never averaged)."""
    return window[..., ::2, ::2]


def write_level(source, target, *, labels: bool, threads: int | None = None) -> None:
    """``target`` = 2x downsampling of ``source``, one target chunk at a time (memory: a few chunks).

    ``source`` and ``target`` are zarr arrays (..., H, W) and (..., ceil(H/2), ceil(W/2)).
    """
    rows, cols = target.chunks[-2:]
    height, width = target.shape[-2:]
    reduce = every_other if labels else mean2
    lead = (slice(None),) * (target.ndim - 2)

    def one(origin: tuple[int, int]) -> None:
        r0, c0 = origin
        r1, c1 = min(r0 + rows, height), min(c0 + cols, width)
        window = np.asarray(source[lead + (slice(2 * r0, 2 * r1), slice(2 * c0, 2 * c1))])
        target[lead + (slice(r0, r1), slice(c0, c1))] = reduce(window)[..., : r1 - r0, : c1 - c0]

    origins = [(r, c) for r in range(0, height, rows) for c in range(0, width, cols)]
    workers = threads or min(4, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, origins):
            pass


def write_pyramid(group, shapes: list[tuple[int, int]], *, labels: bool) -> None:
    """Levels "1".."n-1" of ``group`` from its level "0" (replacing older ones), chunked as level 0."""
    level0 = group["0"]
    chunk = max(level0.chunks[-2:])
    lead = tuple(level0.shape[:-2])
    for k in range(1, len(shapes)):
        target = new_array(group, str(k), lead + shapes[k], level0.dtype, chunk, overwrite=True)
        write_level(group[str(k - 1)], target, labels=labels)
