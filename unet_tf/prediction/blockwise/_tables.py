"""The client's side of the measurements (:mod:`._objects`): blocks, then joined objects; the CSV tables.

``objects.csv`` and ``objects_summary.csv`` are plain CSV files inside the
OME-Zarr output folder (beside ``.zattrs`` / ``zarr.json``; OME-Zarr readers
ignore them), with the columns and rows the whole-image path writes
(:mod:`unet_tf.prediction.files`), each written atomically.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unet_tf.io.tables import write_csv
from unet_tf.objects.morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, summarize_objects

from . import _store
from ._faces import face_pairs, join
from ._merge import neighbours
from ._objects import Measure, batches, block_pass, crop_pass

Gather = Callable[[list, str], list]  # (futures, what) -> results, with progress


def measure(client, gather: Gather, m: Measure, blocks: list, crossing: np.ndarray | None = None) -> list:
    """Every object's (class, first pixel, result): each block's whole objects, then the objects joined across
    faces measured from crops (``crossing``: the instance ids that occur in more than one block)."""
    submit = functools.partial(client.submit, _store.spilled, pure=False)
    paths = [submit(block_pass, m.out, f"{m.what}-{k}", m, k, b, crossing) for k, b in enumerate(blocks)]
    parts = [_store.unspill(path) for path in gather(paths, m.what)]
    pieces = [p for part in parts for p in part["pieces"]]
    if m.source == "components":
        pairs = {
            (k, j): face_pairs(blocks[k], parts[k]["edges"], blocks[j], parts[j]["edges"])
            for k, j in neighbours(blocks)
        }
        joined = join(pieces, [part["count"] for part in parts], pairs)
    else:
        joined = join(pieces)
    paths = [submit(crop_pass, m.out, f"{m.what}-faces-{k}", m, batch) for k, batch in enumerate(batches(joined))]
    crops = [_store.unspill(path) for path in gather(paths, f"{m.what} (faces)")]
    return [f for part in parts for f in part["found"]] + [f for found in crops for f in found]


def crossing_ids(lookups: list[np.ndarray], present: list[np.ndarray]) -> np.ndarray:
    """The final instance ids present in the interiors of more than one block."""
    ids = np.concatenate([lk[np.asarray(p, np.int64)] for lk, p in zip(lookups, present)] + [np.zeros(0, np.int64)])
    values, counts = np.unique(ids[ids > 0], return_counts=True)
    return values[counts > 1]


def image_name(path: str | Path) -> str:
    """The ``image`` column of an input: its name less ``.zarr`` / ``.ome`` (an OME-Zarr) or its suffix."""
    name = Path(path).name
    name = name[: -len(".zarr")] if name.endswith(".zarr") else Path(name).stem
    return name[: -len(".ome")] if name.endswith(".ome") else name


def write_tables(out: Path, rows: list[dict[str, Any]], m: Measure) -> None:
    """``objects.csv`` (with the scale columns of an image used at its own scale) and ``objects_summary.csv``."""
    rows = [{**row, "scale_factor": 1.0, "scale_source": "none"} for row in rows]
    write_csv(out / "objects.csv", rows, OBJECT_COLUMNS)
    summary = summarize_objects(rows, m.names, [m.image_name], pixel_size=m.pixel_size)
    write_csv(out / "objects_summary.csv", summary, SUMMARY_COLUMNS)
