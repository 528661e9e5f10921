"""Measurements over blocks of the finished output: the object table, and the inscribed radii of split_touching.

Both are computed the same way (:mod:`._faces`): each block measures the whole
objects of its interior (:func:`block_pass`) and hands over the open pieces;
the client joins them (:func:`._faces.join`) and each joined object is measured
once from a crop of the output (:func:`crop_pass`, batches of objects in
raster order so a task reads one window).

* The object table (:func:`object_rows`): the rows of
  :func:`~unet_tf.objects.morphometry.measure_objects` on the whole output,
  ids = the final instance ids: for an instance model one row per instance
  (class ``object``), for a semantic model with ``split_touching`` one per
  (class, instance), otherwise one per connected component of each class; the
  mean / max intensity from the raw image (the output's copy). Rows are
  sorted by class, then first pixel, filtered by ``min_size`` and numbered as
  :class:`~unet_tf.objects.bands.BandObjects` numbers them. Measured in crops
  with their image ``origin``, every column equals the whole image's (the
  intensity means of float images up to float rounding).
* The radii (:func:`class_radii`): per class, the inscribed radii of all its
  connected components (:func:`~unet_tf.objects.instances.inscribed_radii`),
  so every block splits touching objects with the WHOLE image's median radius.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from unet_tf.io.zarr import open_output
from unet_tf.objects.bands import number_rows
from unet_tf.objects.instances import inscribed_radii, median_inscribed_radius
from unet_tf.objects.morphometry import measure_labels

from ._faces import Joined, Piece, class_labels, edges, first_pixels, object_crop, open_labels
from ._plan import Block, Box

CROP_BATCH = 64  # joined objects measured by one task (in raster order: one window read)


@dataclass(frozen=True)
class Measure:
    """What to measure over the output folder ``out`` of an image of ``shape`` (small, picklable).

    ``what``: "rows" (the object table) or "radii". ``source``: "components" (class ids of the mask),
    "split" (class ids and instance ids) or "instances" (an instance model: instance ids, one class).
    """

    out: str
    shape: tuple[int, int]
    what: str
    source: str
    class_values: tuple[int, ...]
    class_names: tuple[str, ...]
    image_name: str = "image"
    pixel_size: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return ("background", "object") if self.source == "instances" else self.class_names


def read_window(m: Measure, box: Box) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(class ids, instance ids or None, raw image) of the output in ``box``."""
    y0, y1, x0, x1 = box
    out = open_output(m.out)
    instances = None if m.source == "components" else np.asarray(out.instances[y0:y1, x0:x1])
    raw = np.asarray(out.image[y0:y1, x0:x1]) if m.what == "rows" else None
    if m.source == "instances":
        return (instances > 0).astype(np.uint8), instances, raw
    values = np.asarray(out.mask[y0:y1, x0:x1])
    lut = np.zeros(max(m.class_values) + 1, np.uint8)
    lut[list(m.class_values)] = np.arange(len(m.class_values))
    return lut[values], instances, raw


def _rows(m: Measure, cls: int, labels: np.ndarray, n: int, origin, ids, raw) -> list:
    rows = measure_labels(
        labels, n, image_name=m.image_name, class_name=m.names[cls], pixel_size=m.pixel_size, image=raw, origin=origin
    )
    return [tuple(row.items()) for row in rows]


def _radii(m: Measure, cls: int, labels: np.ndarray, n: int, origin, ids, raw) -> list:
    dist = ndimage.distance_transform_edt(labels > 0 if ids is None else ids == cls).astype(np.float32)
    return [(inscribed_radii(dist, labels), float(dist[labels > 0].max()))]


def _measure_fn(m: Measure) -> Callable:
    return _rows if m.what == "rows" else _radii


def block_pass(m: Measure, position: int, block: Block, crossing: np.ndarray | None = None) -> dict[str, Any]:
    """One block's share: ``found`` (class, first pixel, result) of its whole objects, ``pieces`` (open),
    ``count`` (its component labels), ``edges`` (components: :func:`._faces.edges`)."""
    y0, y1, x0, x1 = interior = block.interior
    ids, instances, raw = read_window(m, interior)
    combined = np.zeros(ids.shape, np.int64)
    found, pieces, count = [], [], 0
    for cls in range(1, len(m.names)):
        labels, n, keys = class_labels(ids, cls, instances)
        if not n:
            continue
        first, boxes = first_pixels(labels, n, (y0, x0), m.shape[1])
        is_open = open_labels(labels, n, interior, m.shape, None if crossing is None else np.isin(keys, crossing))
        whole = np.flatnonzero(~is_open[1:]) + 1
        if whole.size:
            remap = np.zeros(n + 1, np.int32)
            remap[whole] = np.arange(1, whole.size + 1)
            results = _measure_fn(m)(m, cls, remap[labels], int(whole.size), (y0, x0), ids, raw)
            firsts = first[whole] if m.what == "rows" else [0]
            found += [(cls, int(f), r) for f, r in zip(firsts, results)]
        if instances is None:
            combined[labels > 0] = labels[labels > 0] + count
        for k in np.flatnonzero(is_open):
            key = int(keys[k]) if instances is not None else int(k) + count
            pieces.append(Piece(position, cls, key, int(first[k]), tuple(int(v) for v in boxes[k])))
        count += n
    lines = edges(combined, ids) if instances is None else {}
    return {"found": found, "pieces": pieces, "count": count, "edges": lines}


def crop_pass(m: Measure, objects: list[Joined]) -> list[tuple[int, int, Any]]:
    """(class, first pixel, result) of each joined object, measured in one window read around them all."""
    height, width = m.shape
    y0, x0 = max(min(o.box[0] for o in objects) - 1, 0), max(min(o.box[2] for o in objects) - 1, 0)
    y1, x1 = min(max(o.box[1] for o in objects) + 1, height), min(max(o.box[3] for o in objects) + 1, width)
    ids, instances, raw = read_window(m, (y0, y1, x0, x1))
    found = []
    for o in objects:
        b0, b1, c0, c1 = max(o.box[0] - 1, 0), min(o.box[1] + 1, height), max(o.box[2] - 1, 0), min(o.box[3] + 1, width)
        crop = (slice(b0 - y0, b1 - y0), slice(c0 - x0, c1 - x0))
        inst = None if instances is None else instances[crop]
        obj = object_crop(o, ids[crop], inst, (b0, c0), width).astype(np.int32)
        result = _measure_fn(m)(m, o.cls, obj, 1, (b0, c0), None, None if raw is None else raw[crop])
        found.append((o.cls, o.first, result[0]))
    return found


def batches(objects: list[Joined], size: int = CROP_BATCH) -> list[list[Joined]]:
    """The joined objects in raster order of their first pixel, ``size`` per batch."""
    ordered = sorted(objects, key=lambda o: (o.first, o.cls))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def object_rows(found: list[tuple[int, int, Any]], min_size: int) -> list[dict[str, Any]]:
    """The table from every (class, first pixel, row items): sorted, filtered by ``min_size``, numbered."""
    return number_rows([(cls, first, dict(items)) for cls, first, items in found], min_size)


def class_radii(found: list[tuple[int, int, Any]]) -> dict[int, float]:
    """Class id -> median inscribed radius of all its objects (:func:`median_inscribed_radius`)."""
    radii: dict[int, list] = {}
    tops: dict[int, float] = {}
    for cls, _, (values, top) in found:
        radii.setdefault(cls, []).append(np.asarray(values))
        tops[cls] = max(tops.get(cls, 0.0), top)
    return {cls: median_inscribed_radius(np.concatenate(v), tops[cls]) for cls, v in radii.items()}
