"""Object-level scores of predicted instance label images against the truth.

Both images are 2-D integer label images (H, W): 0 background, one id per
object (ids need not be consecutive); a negative id is refused
(:class:`~unet_tf.errors.UserInputError`). A bool image is a foreground mask:
its objects are its 8-connected components
(:func:`unet_tf.objects.instances.label_components`). Everything derives from the overlap
table of the two images (:func:`overlap_table`): a joint histogram of the label
pairs over the pixels where both are objects, so the cost is O(H W) plus the
number of overlapping pairs, never objects x objects x pixels.

Definitions, at an IoU threshold ``t``:

* Matching: one-to-one pairs (true, predicted) with ``IoU >= t``, as in
  ``stardist.matching`` and ``cellpose.metrics``, as many as possible, ties
  broken by the larger total IoU (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment``, as both do). For ``t >= 0.5`` an
  object has at most one partner at or above ``t`` (the one exception: an
  object cut exactly in two halves, each at IoU 0.5), so the matching is
  almost always unique and no assignment is solved.
* ``tp`` matched pairs, ``fp`` unmatched predicted, ``fn`` unmatched true
  objects; ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``,
  ``f1 = 2 tp / (2 tp + fp + fn)``, all at ``t = 0.5``.
* ``ap50``: ``tp / (tp + fp + fn)`` at 0.5 (the DSB2018 "average precision",
  as StarDist and Cellpose report it); ``mean_ap``: its mean over
  ``t = 0.50, 0.55, ..., 0.95`` (the DSB2018 score).
* Panoptic quality at 0.5 (Kirillov et al. 2019): ``sq`` = mean IoU of the
  matched pairs, ``rq = tp / (tp + fp/2 + fn/2)`` (= f1), ``pq = sq * rq``.
* ``seg``: the Cell Tracking Challenge SEG score: for every true object, the
  IoU with the predicted object that covers more than half of its pixels (0
  if none does), averaged over the true objects. It needs no matching.
* ``count_error = n_pred - n_true``; ``count_error_rel = count_error / n_true``.

Ignore regions (``ignore``, bool (H, W)): a predicted object with more than
half of its pixels inside them is left out of the matching and of every
count (``n_pred``, ``fp``, ...; ``n_ignored`` counts them), so an object in
an unannotated area is not a false positive. ``seg`` still sees every
predicted object, as the CTC SEG does (a prediction that merges a true
object with an unannotated neighbour scores their Jaccard index, not 0).
True objects are whatever the label image holds.

Rows (:data:`INSTANCE_COLUMNS`): one per image, then ``image == "mean"`` (the
mean over images of each per-image score, NaN skipped) and ``image == "all"``
(pooled: counts summed over images, then the ratios; ``seg`` is the mean over
all true objects of all images, as the CTC computes it; ``mean_ap`` the mean
over thresholds of the pooled ``ap``). A ratio with a zero denominator is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from unet_tf.objects.labels import as_label_image, index_by_id

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""IoU thresholds 0.50, 0.55, ..., 0.95 of ``mean_ap``."""

INSTANCE_COLUMNS = (
    "image",
    "n_true",
    "n_pred",
    "n_ignored",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "ap50",
    "mean_ap",
    "sq",
    "rq",
    "pq",
    "seg",
    "count_error",
    "count_error_rel",
)


# === Overlaps and matching ===


@dataclass(frozen=True)
class Overlaps:
    """The overlap table of a true and a predicted label image.

    ``true_ids`` (n,) and ``pred_ids`` (m,): the object ids present, sorted;
    ``true_area`` (n,), ``pred_area`` (m,): their pixel counts; ``rows``,
    ``cols``, ``inter`` (k,): for each overlapping pair, the index into
    ``true_ids`` / ``pred_ids`` and the intersection in px.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_area: np.ndarray
    pred_area: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    inter: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """IoU of each overlapping pair (k,), float64."""
        union = self.true_area[self.rows] + self.pred_area[self.cols] - self.inter
        return self.inter / union


def overlap_table(true: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Sparse overlap table of two label images of the same shape (H, W) (see the module docstring)."""
    true, pred = as_label_image(true, "true"), as_label_image(pred, "pred")
    if true.shape != pred.shape or true.ndim != 2:
        raise ValueError(f"true and pred must be 2-D of one shape, got {true.shape} and {pred.shape}")
    t_ids, t_area, t_index = index_by_id(true)
    p_ids, p_area, p_index = index_by_id(pred)
    both = (t_index > 0) & (p_index > 0)
    key = (t_index[both].astype(np.int64) - 1) * max(p_ids.size, 1) + (p_index[both] - 1)
    pairs, inter = np.unique(key, return_counts=True)
    rows, cols = np.divmod(pairs, max(p_ids.size, 1))
    return Overlaps(t_ids, p_ids, t_area, p_area, rows, cols, inter)


def match_pairs(overlaps: Overlaps, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching at IoU >= ``threshold`` (as StarDist, Cellpose): (rows, cols, iou) of the pairs.

    ``rows`` / ``cols`` index ``overlaps.true_ids`` / ``overlaps.pred_ids``.
    The most pairs possible; among those, the largest total IoU.
    """
    from scipy.optimize import linear_sum_assignment

    iou = overlaps.iou
    keep = iou >= threshold
    rows, cols, iou = overlaps.rows[keep], overlaps.cols[keep], iou[keep]
    if np.unique(rows).size == rows.size and np.unique(cols).size == cols.size:
        return rows, cols, iou
    r_ids, r = np.unique(rows, return_inverse=True)
    c_ids, c = np.unique(cols, return_inverse=True)
    score = np.zeros((r_ids.size, c_ids.size))
    score[r, c] = 1.0 + iou / (2.0 * min(r_ids.size, c_ids.size))
    sel_r, sel_c = linear_sum_assignment(score, maximize=True)
    ok = score[sel_r, sel_c] > 0
    sel_r, sel_c = sel_r[ok], sel_c[ok]
    lookup = {(a, b): v for a, b, v in zip(r, c, iou)}
    return r_ids[sel_r], c_ids[sel_c], np.array([lookup[(a, b)] for a, b in zip(sel_r, sel_c)])


def drop_ignored(pred: np.ndarray, ignore: np.ndarray | None) -> tuple[np.ndarray, int]:
    """``pred`` without the objects lying more than half inside ``ignore``; and how many went."""
    if ignore is None:
        return pred, 0
    ignore = np.asarray(ignore, dtype=bool)
    if ignore.shape != pred.shape:
        raise ValueError(f"ignore has shape {ignore.shape}, pred {pred.shape}")
    ids, area = np.unique(pred[pred > 0], return_counts=True)
    inside = np.unique(pred[(pred > 0) & ignore], return_counts=True)
    hidden = np.zeros(ids.size, dtype=np.int64)
    hidden[np.searchsorted(ids, inside[0])] = inside[1]
    gone = ids[2 * hidden > area]
    if gone.size == 0:
        return pred, 0
    return np.where(np.isin(pred, gone), 0, pred), int(gone.size)


# === Per-image counts ===


@dataclass(frozen=True)
class InstanceCounts:
    """What the scores of one image (or of many, summed) are computed from.

    ``tp``, ``fp``, ``fn``: int arrays over :data:`THRESHOLDS`; ``iou_sum``:
    total IoU of the matched pairs at 0.5; ``seg_sum``: total CTC Jaccard over
    the true objects.
    """

    n_true: int
    n_pred: int
    n_ignored: int
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    iou_sum: float
    seg_sum: float

    def __add__(self, other: "InstanceCounts") -> "InstanceCounts":
        return InstanceCounts(
            self.n_true + other.n_true,
            self.n_pred + other.n_pred,
            self.n_ignored + other.n_ignored,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.iou_sum + other.iou_sum,
            self.seg_sum + other.seg_sum,
        )


def _seg_sum(overlaps: Overlaps) -> float:
    """Sum over true objects of the IoU with the predicted object covering more than half of it."""
    covers = 2 * overlaps.inter > overlaps.true_area[overlaps.rows]
    return float(overlaps.iou[covers].sum())


def instance_counts(
    true: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None, thresholds: Sequence[float] = THRESHOLDS
) -> InstanceCounts:
    """Match ``pred`` against ``true`` (label images, H x W, see the module docstring) at every threshold.

    Args:
        true: (H, W) true instance ids, 0 background.
        pred: (H, W) predicted instance ids, 0 background.
        ignore: optional bool (H, W); predicted objects more than half inside
            it are left out of the matching and the counts (not of ``seg``).
        thresholds: IoU thresholds; the first must be 0.5 for the
            precision / recall / PQ columns. Default :data:`THRESHOLDS`.
    """
    true, pred = as_label_image(true, "true"), as_label_image(pred, "pred")
    every = overlap_table(true, pred)
    pred, n_ignored = drop_ignored(pred, ignore)
    overlaps = overlap_table(true, pred) if n_ignored else every
    n_true, n_pred = overlaps.true_ids.size, overlaps.pred_ids.size
    tp = np.zeros(len(thresholds), dtype=np.int64)
    iou_sum = 0.0
    for i, threshold in enumerate(thresholds):
        _, _, iou = match_pairs(overlaps, threshold)
        tp[i] = iou.size
        if i == 0:
            iou_sum = float(iou.sum())
    return InstanceCounts(n_true, n_pred, n_ignored, tp, n_pred - tp, n_true - tp, iou_sum, _seg_sum(every))


# === Scores and rows ===


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def instance_scores(counts: InstanceCounts) -> dict[str, Any]:
    """The score columns of :data:`INSTANCE_COLUMNS` (all but ``image``) from ``counts``."""
    tp, fp, fn = (int(v[0]) for v in (counts.tp, counts.fp, counts.fn))
    ap = [_ratio(a, a + b + c) for a, b, c in zip(counts.tp, counts.fp, counts.fn)]
    sq = _ratio(counts.iou_sum, tp)
    rq = _ratio(tp, tp + 0.5 * fp + 0.5 * fn)
    return {
        "n_true": counts.n_true,
        "n_pred": counts.n_pred,
        "n_ignored": counts.n_ignored,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "ap50": ap[0],
        "mean_ap": float(np.mean(ap)) if not np.isnan(ap).any() else float("nan"),
        "sq": sq,
        "rq": rq,
        "pq": _ratio(counts.iou_sum, tp + 0.5 * fp + 0.5 * fn),
        "seg": _ratio(counts.seg_sum, counts.n_true),
        "count_error": counts.n_pred - counts.n_true,
        "count_error_rel": _ratio(counts.n_pred - counts.n_true, counts.n_true),
    }


def evaluate_instances(true: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, Any]:
    """Scores of one image (see the module docstring); keys :data:`INSTANCE_COLUMNS` minus ``image``."""
    return instance_scores(instance_counts(true, pred, ignore))


@dataclass
class InstanceEvaluator:
    """Accumulates images one at a time; :meth:`rows` gives per-image, mean and pooled rows."""

    names: list[str] = field(default_factory=list)
    counts: list[InstanceCounts] = field(default_factory=list)

    def add(self, name: str, true: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, Any]:
        """Score one image, remember it, and return its row."""
        counts = instance_counts(true, pred, ignore)
        self.names.append(name)
        self.counts.append(counts)
        return {"image": name, **instance_scores(counts)}

    def rows(self) -> list[dict[str, Any]]:
        """Per-image rows, then ``mean`` (macro: counts empty, count_error averaged), ``all`` (pooled)."""
        per_image = [{"image": n, **instance_scores(c)} for n, c in zip(self.names, self.counts)]
        if not per_image:
            return []
        pooled = sum(self.counts[1:], self.counts[0])
        mean = {"image": "mean", **_macro(per_image)}
        return per_image + [mean, {"image": "all", **instance_scores(pooled)}]


def _macro(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in INSTANCE_COLUMNS[1:]:
        values = np.array([row[col] for row in rows], dtype=float)
        if isinstance(rows[0][col], (int, np.integer)):
            out[col] = None if col != "count_error" else float(values.mean())
        else:
            out[col] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out
