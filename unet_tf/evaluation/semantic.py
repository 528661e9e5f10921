"""Per-class scores of predicted masks against ground truth, as table rows.

The formulas live in :mod:`unet_tf.evaluation.scores` (:func:`~unet_tf.evaluation.scores.confusion_counts`
and :func:`~unet_tf.evaluation.scores.scores_from_counts`); this module only arranges
them into rows and aggregates over images (:mod:`unet_tf.io.tables` writes them).

Masks are 2-D integer class-id arrays (H, W) with values 0..C-1, class 0 the
background. One row per class (background included) holds::

    image, page, class, dice, iou, precision, recall, pixel_accuracy, tp, fp, fn

``page`` is the 1-based page of a multi-page stack (empty for a single image).

``pixel_accuracy`` is the overall fraction of correctly classified pixels of
the image (the same value on every class row of that image). ``tp, fp, fn``
are pixel counts of that class (one-vs-rest).

Undefined scores: a score whose denominator is 0 is NaN ("undefined", as in
:mod:`~unet_tf.evaluation.scores`): Dice and IoU of a class absent from both truth and
prediction, precision of a class never predicted, recall of a class absent
from the truth. In CSV files NaN is written ``nan``; an empty cell means "not
applicable" (``None``, e.g. the counts of a "mean" row).

Two aggregate rows per class, after the per-image rows:

* ``image == "mean"`` (macro): the mean over images of each per-image score,
  skipping images where that score is NaN (NaN if it is NaN in every image).
  Every image weighs the same, however large. Counts are left empty.
* ``image == "all"`` (pooled, micro): the scores of the summed ``tp, fp, fn,
  tn`` counts over all images, as if the images were one big image. Large
  images weigh more. Counts are the sums.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unet_tf.data.targets import IGNORE_ID
from unet_tf.evaluation.scores import confusion_counts, scores_from_counts
from unet_tf.io.tables import format_table, nanmean, write_csv

SCORE_NAMES = ("dice", "iou", "precision", "recall")
COUNT_NAMES = ("tp", "fp", "fn")
METRICS_COLUMNS = ("image", "page", "class", *SCORE_NAMES, "pixel_accuracy", *COUNT_NAMES)
MEAN_ROW = "mean"
POOLED_ROW = "all"

Counts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# === Rows from counts ===


def _rows_from_counts(counts: Counts, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class (without ``image``) from int64 ``(tp, fp, fn, tn)`` of shape [C]."""
    scores = scores_from_counts(*counts)
    tp, fp, fn, _ = counts
    rows = []
    for c, name in enumerate(class_names):
        row: dict[str, Any] = {"class": name}
        row.update({s: float(scores[s][c]) for s in SCORE_NAMES})
        row["pixel_accuracy"] = float(scores["pixel_accuracy"])
        row.update({"tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c])})
        rows.append(row)
    return rows


def evaluate(true_ids: np.ndarray, pred_ids: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per-class scores of one image.

    Args:
        true_ids, pred_ids: integer class ids of the same shape (H, W), values
            in ``[0, C)`` with ``C = len(class_names)`` (C >= 2).
        class_names: names of classes 0..C-1 (class 0 the background).

    Returns:
        C rows (dicts) with keys ``class, dice, iou, precision, recall,
        pixel_accuracy, tp, fp, fn`` (no ``image``: the caller names it).
        Scores are floats (NaN where undefined, see the module docstring),
        counts ints.

    Example:
        >>> import numpy as np
        >>> truth = np.array([[0, 1], [1, 1]]); pred = np.array([[0, 1], [0, 1]])
        >>> round(evaluate(truth, pred, ("background", "cell"))[1]["dice"], 4)
        0.8
    """
    counts = confusion_counts(true_ids, pred_ids, len(class_names), ignore_id=IGNORE_ID)
    return _rows_from_counts(counts, class_names)


# === Aggregation over images ===


class Evaluator:
    """Collects per-image confusion counts; makes per-image, mean and pooled rows.

    Only the counts (4 x C integers per image) are kept, never the masks, so
    images can be added one at a time while predicting::

        ev = Evaluator(("background", "axon"))
        ev.add("img_01.tif", truth, prediction)
        ev.write_csv("metrics.csv")
        print(ev.format_table())
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = tuple(class_names)
        if len(self.class_names) < 2:
            raise ValueError(f"need at least 2 classes, got {self.class_names}")
        self._names: list[tuple[str, int | None]] = []
        self._counts: list[Counts] = []

    def __len__(self) -> int:
        return len(self._names)

    def add(
        self, image_name: str, true_ids: np.ndarray, pred_ids: np.ndarray, page: int | None = None
    ) -> list[dict[str, Any]]:
        """Score one image, or one page of a stack (arrays as in :func:`evaluate`); returns its rows.

        Raises ValueError for an (image, page) already added or a reserved
        aggregate name (``"mean"``, ``"all"``), so rows stay unambiguous.
        """
        image_name = str(image_name)
        if image_name in (MEAN_ROW, POOLED_ROW):
            raise ValueError(f"image name {image_name!r} is reserved for the aggregate rows")
        if (image_name, page) in self._names:
            raise ValueError(f"image {image_name!r}{'' if page is None else f' page {page}'} was already evaluated")
        counts = confusion_counts(true_ids, pred_ids, len(self.class_names), ignore_id=IGNORE_ID)
        self._names.append((image_name, page))
        self._counts.append(counts)
        return [{"image": image_name, "page": page, **row} for row in _rows_from_counts(counts, self.class_names)]

    def rows(self) -> list[dict[str, Any]]:
        """All rows: per image (C each, in order added), then C "mean", then C "all".

        Keys as :data:`METRICS_COLUMNS`. Empty list when no image was added.
        """
        if not self._names:
            return []
        per_image = [
            [{"image": name, "page": page, **row} for row in _rows_from_counts(counts, self.class_names)]
            for (name, page), counts in zip(self._names, self._counts)
        ]
        out = [row for rows in per_image for row in rows]
        for c, class_name in enumerate(self.class_names):
            row: dict[str, Any] = {"image": MEAN_ROW, "class": class_name}
            for key in (*SCORE_NAMES, "pixel_accuracy"):
                row[key] = nanmean(rows[c][key] for rows in per_image)
            row.update({key: None for key in COUNT_NAMES})
            out.append(row)
        pooled = tuple(np.sum([counts[i] for counts in self._counts], axis=0) for i in range(4))
        out += [{"image": POOLED_ROW, **row} for row in _rows_from_counts(pooled, self.class_names)]
        return out

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`rows` to ``path`` atomically (columns :data:`METRICS_COLUMNS`)."""
        return write_csv(path, self.rows(), METRICS_COLUMNS)

    def format_table(self, digits: int = 4) -> str:
        """:meth:`rows` as an aligned plain-text table with a header, for the terminal (no page column
        unless some image is a page of a stack)."""
        rows = self.rows()
        paged = any(row.get("page") is not None for row in rows)
        columns = METRICS_COLUMNS if paged else tuple(c for c in METRICS_COLUMNS if c != "page")
        return format_table(rows, columns, digits=digits)
