"""Segmentation scores on NumPy arrays: the count formulas behind the Keras metrics, losses and tables.

Pure NumPy (no TensorFlow), so evaluation works where only the ONNX runtime is
installed. :mod:`unet_tf.training.metrics` wraps the same formulas as Keras metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# === The shared formula ===


def tversky_from_counts(tp: Any, fp: Any, fn: Any, alpha: float, beta: float, smooth: float = 0.0) -> Any:
    """Tversky index ``(tp + s) / (tp + alpha*fp + beta*fn + s)``.

    Plain arithmetic, so it works on NumPy arrays, Python numbers and Keras /
    TensorFlow tensors alike (element-wise, any shape). ``alpha`` weighs false
    positives and ``beta`` false negatives (Salehi et al., 2017);
    ``alpha = beta = 0.5`` gives Dice, ``alpha = beta = 1`` gives IoU. The
    soft Tversky loss (:mod:`unet_tf.training.losses`) calls this with soft counts; the scores
    here call it with hard counts and ``smooth = 0``.
    """
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def confusion_counts(
    y_true_ids: np.ndarray, y_pred_ids: np.ndarray, n_classes: int, ignore_id: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class one-vs-rest counts of two integer class maps.

    Args:
        y_true_ids, y_pred_ids: integer arrays of the same shape (any rank)
            with values in ``[0, n_classes)`` (truth: or ``ignore_id``).
        n_classes: number of classes C (2 for a binary task).
        ignore_id: pixels whose TRUE id equals it are left out of every count
            (e.g. ``unet_tf.data.targets.IGNORE_ID``); default None: none.

    Returns:
        ``(tp, fp, fn, tn)``, each an int64 array of shape ``[C]``; for every
        class ``tp + fp + fn + tn`` equals the number of pixels not ignored.
    """
    t = np.asarray(y_true_ids)
    p = np.asarray(y_pred_ids)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs prediction {p.shape}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    t = t.ravel()
    p = p.ravel()
    if ignore_id is not None:
        keep = t != ignore_id
        t, p = t[keep], p[keep]
    for what, a in (("truth", t), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{what} holds class ids outside [0, {n_classes}): min {a.min()}, max {a.max()}")
    # A small index dtype keeps this fast on 5000 x 5500 masks (int64: ~10x slower).
    index_dtype = np.uint16 if n_classes * n_classes <= 65536 else np.int64
    index = t.astype(index_dtype) * index_dtype(n_classes) + p.astype(index_dtype)
    cm = np.bincount(index, minlength=n_classes * n_classes)
    cm = cm.reshape(n_classes, n_classes)  # rows: truth, columns: prediction
    tp = np.diag(cm).astype(np.int64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = t.size - tp - fp - fn
    return tp, fp, fn, tn


def scores_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, Any]:
    """Scores from per-class counts (see the module docstring for formulas).

    Dice, IoU, precision and recall are all :func:`tversky_from_counts` with
    ``(alpha, beta)`` = (0.5, 0.5), (1, 1), (1, 0) and (0, 1). Counts are
    non-negative, so a zero denominator means a zero numerator: 0/0 = NaN.

    Returns:
        ``{"dice", "iou", "precision", "recall"}``: float64 arrays of shape
        ``[C]`` (NaN where undefined), and ``"pixel_accuracy"``: a float
        (``sum(tp) / n_pixels``; NaN for zero pixels).
    """
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))
    n_pixels = (tp + fp + fn + tn)[0] if tp.size else np.float64(0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "dice": tversky_from_counts(tp, fp, fn, 0.5, 0.5),
            "iou": tversky_from_counts(tp, fp, fn, 1.0, 1.0),
            "precision": tversky_from_counts(tp, fp, fn, 1.0, 0.0),
            "recall": tversky_from_counts(tp, fp, fn, 0.0, 1.0),
            "pixel_accuracy": float(np.float64(tp.sum()) / n_pixels),
        }
