"""The object table of a class mask fed in row bands: the rows of ``measure_objects``, O(band) memory.

:class:`BandObjects` receives class ids top to bottom in bands of any height.
It keeps a buffer of rows, labels each foreground class in it
(``scipy.ndimage.label``, 8- or 4-connected) and measures every object that
does not touch the buffer's last row: with 8-connectivity no later row can
join such an object, so it is finished and its pixels are all in the buffer.
Objects touching the last row are *open*: their rows stay in the buffer and are
labelled again with the next band, so an object crossing any number of band
edges is measured once, whole. Then the rows above the highest open object are
dropped, and finished objects left in the kept rows are erased (they cannot
touch any later pixel), so each object is measured once. The new band is at
least as tall as the buffer, so re-labelling costs O(pixels) overall even when one object spans the whole image.

Each object is measured with :func:`unet_tf.objects.morphometry.measure_labels` on the buffer (the
same crop, contour and moments as on the whole mask) and shifted to image rows.
When the raw image rows are fed with the ids (``add(ids, image)``), a buffer of
them runs beside the ids, so ``mean_intensity`` / ``max_intensity`` are those of
``measure_objects(..., image=image)``; without them the two columns are NaN.
At the end the rows are sorted by class, then raster order of each object's
first pixel (the order of ``scipy.ndimage.label`` on the whole mask), filtered
by ``min_size`` and numbered. Integer columns, perimeter, eccentricity and
solidity equal those of ``measure_objects`` exactly; ``centroid_y`` within
1e-9 px (the buffer offset is added after the mean instead of before).

Memory: the buffer, i.e. one band plus the rows of the open objects, about
10 bytes per buffered pixel while labelling (plus the raw image rows, when fed). An object as tall as the image
would keep every row from its top down (the price of measuring its perimeter
and convex hull exactly), so the buffer is capped at ``max_pixels``: when the
rows kept would exceed it, every object in the buffer is measured as it is and
the buffer emptied, so an object that tall is cut there into pieces, each a row
of the table (said once). Below the cap the table is exact.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from unet_tf.errors import say_note
from unet_tf.objects.labels import structure
from unet_tf.objects.morphometry import measure_labels

MAX_PIXELS = 2**25  # buffer cap: ~330 MiB while labelling


def number_rows(found: list[tuple[int, int, dict[str, Any]]], min_size: int = 0) -> list[dict[str, Any]]:
    """The table from the rows of objects measured in pieces of an image (bands, blocks): ``found`` holds
    (class id, raster index of the object's first pixel, row); rows are sorted by class, then first pixel (the
    order of ``scipy.ndimage.label`` on the whole mask), those under ``min_size`` px dropped, the rest numbered
    1..n per class in ``object_id``, as :func:`~unet_tf.objects.morphometry.measure_objects` numbers them."""
    out: list[dict[str, Any]] = []
    number: dict[int, int] = {}
    for cls, _, row in sorted(found, key=lambda item: (item[0], item[1])):
        if row["area_px"] >= max(min_size, 1):
            number[cls] = number.get(cls, 0) + 1
            out.append({**row, "object_id": number[cls]})
    return out


class BandObjects:
    """Accumulate object rows from class-id bands; :meth:`rows` gives the finished table.

    Args:
        class_names: names of classes 0..C-1 (class 0 the background, never measured).
        width: int, the mask width W.
        image_name, pixel_size, min_size, connectivity: as ``measure_objects``.
        max_pixels: int, the buffer cap (see the module docstring). Default MAX_PIXELS (2**25).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        width: int,
        *,
        image_name: str = "image",
        pixel_size: float | None = None,
        min_size: int = 0,
        connectivity: int = 8,
        max_pixels: int = MAX_PIXELS,
    ):
        self.class_names, self.width, self.max_pixels = tuple(class_names), int(width), max_pixels
        self.image_name, self.pixel_size, self.min_size = image_name, pixel_size, min_size
        self.structure = structure(connectivity)
        self.buffer = np.zeros((0, self.width), np.uint8)
        self.row0 = 0  # image row of buffer[0]
        self.pending = np.zeros((0, self.width), np.uint8)  # rows not yet labelled
        self.image: np.ndarray | None = None  # raw image rows of buffer + pending (None: no image fed)
        self.rows_fed = 0
        self.found: list[tuple[int, int, tuple]] = []  # (class id, first pixel, row values): 3x less than dicts
        self.keys: tuple[str, ...] = ()

    def add(self, ids: np.ndarray, image: np.ndarray | None = None) -> None:
        """Append (h, W) class ids (the next rows of the mask) and, optionally, the same (h, W) rows
        of the raw image (any numeric dtype) for the intensity columns: with every band or with none."""
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.width:
            raise ValueError(f"ids band must be (h, {self.width}), got shape {ids.shape}")
        if ids.size and ids.max() >= len(self.class_names):
            raise ValueError(f"ids hold {ids.max()}, outside [0, {len(self.class_names)})")
        self._add_image(image, ids.shape)
        self.pending = np.concatenate([self.pending, ids.astype(np.uint8)])
        self.rows_fed += len(ids)
        if len(self.pending) >= max(len(self.buffer), 1):  # amortized: relabel at most 2x the pixels
            cut = (len(self.buffer) + len(self.pending)) * self.width > self.max_pixels
            if cut:
                say_note(
                    "very tall objects are cut into pieces in the object table (streamed prediction, `predict.stream`)",
                    f"{self.image_name} (over {self.max_pixels // self.width} rows)",
                )
            self._scan(final=cut)

    def _add_image(self, image: np.ndarray | None, shape: tuple[int, int]) -> None:
        """Append raw image rows beside the ids; ValueError when fed with some bands only."""
        if (image is None) != (self.image is None) and self.rows_fed:
            raise ValueError("image rows must come with every band of ids or with none")
        if image is None:
            return
        image = np.asarray(image)
        if image.shape != shape:
            raise ValueError(f"image band has shape {image.shape}, the ids band {shape}")
        self.image = image.copy() if self.image is None else np.concatenate([self.image, image])

    def rows(self) -> list[dict[str, Any]]:
        """Finish (the last rows close every open object) and return the table rows."""
        self._scan(final=True)
        return number_rows([(c, first, dict(zip(self.keys, values))) for c, first, values in self.found], self.min_size)

    def _scan(self, final: bool) -> None:
        buffer = np.concatenate([self.buffer, self.pending])
        self.pending = self.pending[:0]
        if not len(buffer):
            return
        keep_from = len(buffer)
        for c in range(1, len(self.class_names)):
            labels, n = ndimage.label(buffer == c, structure=self.structure)
            if not n:
                continue
            is_open = np.zeros(n + 1, bool)
            if not final:
                is_open[np.unique(labels[-1])] = True
                is_open[0] = False
            tops = np.array([s[0].start if s is not None else len(buffer) for s in ndimage.find_objects(labels, n)])
            if is_open.any():
                keep_from = min(keep_from, int(tops[is_open[1:]].min()))
            self._measure(labels, n, ~is_open, c, tops)
            if not final:  # finished objects may lie in rows kept for any class: erase, never measure twice
                buffer[~is_open[labels] & (labels > 0)] = 0
        self.buffer = buffer[keep_from:]
        if self.image is not None:
            self.image = self.image[keep_from:].copy()  # a copy: the dropped rows are freed
        self.row0 += keep_from

    def _measure(self, labels: np.ndarray, n: int, done: np.ndarray, c: int, tops: np.ndarray) -> None:
        """Measure the finished labels (``done[k]``) of class ``c`` and keep their rows."""
        done[0] = False
        finished = np.flatnonzero(done)
        if not finished.size:
            return
        remap = np.zeros(n + 1, np.int32)
        remap[finished] = np.arange(1, finished.size + 1)
        subset = remap[labels] if finished.size < n else labels
        rows = measure_labels(
            subset,
            int(finished.size),
            image_name=self.image_name,
            class_name=self.class_names[c],
            pixel_size=self.pixel_size,
            image=self.image,
        )
        for k, row in zip(finished, rows):
            top = int(tops[k - 1])
            first_x = int(np.argmax(labels[top] == k))
            row["centroid_y"] += self.row0
            row["bbox_y0"] += self.row0
            row["bbox_y1"] += self.row0
            self.keys = tuple(row)
            self.found.append((c, (self.row0 + top) * self.width + first_x, tuple(row.values())))
