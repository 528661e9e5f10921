"""Segmentation scores in Keras: the count formulas of :mod:`unet_tf.evaluation.scores`, streamed.

Two layers share the same definitions:

* NumPy functions for whole images, in :mod:`unet_tf.evaluation.scores`:
  :func:`~unet_tf.evaluation.scores.confusion_counts` turns integer class maps into per-class
  ``tp, fp, fn, tn`` counts and :func:`~unet_tf.evaluation.scores.scores_from_counts` turns
  counts into Dice, IoU, precision, recall and pixel accuracy.
* Here, streaming Keras metrics (:class:`DiceScore`, :class:`IoUScore`,
  :class:`PixelAccuracy`) that add up the same hard counts over every batch of
  an epoch and score them once in ``result()``, so ``val_dice`` is the Dice of
  the whole validation set, not a mean of per-batch Dice values.

Definitions (for class ``c``; counts over all pixels considered)::

    tversky(a, b) = tp / (tp + a * fp + b * fn)     (tversky_from_counts)
    dice      = tversky(0.5, 0.5) = 2 tp / (2 tp + fp + fn)
    iou       = tversky(1, 1)     = tp / (tp + fp + fn)
    precision = tversky(1, 0)     = tp / (tp + fp)
    recall    = tversky(0, 1)     = tp / (tp + fn)
    pixel_accuracy = sum_c tp_c / n_pixels

Empty case: a score whose denominator is 0 (for Dice and IoU: the class is
absent from both truth and prediction) is NaN, meaning "undefined", not 0 or 1.
Means over classes skip NaN values; a mean over no defined class is NaN. The
Keras metrics follow the same rule.

Ignored pixels (nnU-Net's ignore label) are counted nowhere: not in any class's
``tp, fp, fn, tn`` nor in the pixel total. ``confusion_counts`` drops the
pixels whose true id is ``ignore_id``; the Keras metrics (and the losses) read
``y_true`` with an optional last weight channel (:func:`split_weight`, as
built by :func:`unet_tf.data.pipeline.make_dataset`) and drop pixels of weight 0.

Class conventions: binary tasks have one sigmoid channel (class 1, the
foreground) and are scored as two classes, background 0 and foreground 1
(prediction ``p > threshold``); multi-class tasks have C softmax channels and
are scored by argmax. The summary Dice / IoU is the mean over the foreground
classes ``1 .. C-1`` (background excluded: it dominates the pixel count and
would hide errors on rare classes); for binary tasks that is the foreground
class alone.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from unet_tf.evaluation.scores import tversky_from_counts


def split_weight(y_true: Any, n_channels: int | None) -> tuple[Any, Any]:
    """Targets and per-pixel weights from ``y_true`` of K or K + 1 channels.

    Args:
        y_true: float ``[..., K]`` targets, or ``[..., K + 1]`` targets followed
            by a weight channel (0 = ignored pixel), as
            :func:`unet_tf.data.pipeline.make_dataset` yields.
        n_channels: K, the number of prediction channels (``y_pred.shape[-1]``).

    Returns:
        ``(targets [..., K], weight [...] or None)``; None when ``y_true`` has
        K channels (every pixel weight 1). When the channel count of
        ``y_true`` is unknown until run time, the weight is always a tensor
        (all 1 for K channels).
    """
    have = y_true.shape[-1]
    if n_channels is None:
        raise ValueError("the number of output channels must be known")
    if have is None:
        # Known only at run time (a tf.function retraced with relaxed shapes, e.g.
        # after seeing both layouts): K channels give weight 0 + 1, K + 1 give w + 0.
        extra = ops.cast(ops.shape(y_true)[-1] - n_channels, y_true.dtype)
        return y_true[..., :n_channels], ops.sum(y_true[..., n_channels:], axis=-1) + (1.0 - extra)
    if have == n_channels:
        return y_true, None
    if have == n_channels + 1:
        return y_true[..., :n_channels], y_true[..., n_channels]
    raise ValueError(
        f"y_true has {have} channels for {n_channels} output channels: expected "
        f"{n_channels} (targets) or {n_channels + 1} (targets and a weight channel)"
    )


# === Keras: streaming metrics ===


class _ConfusionCountsMetric(keras.metrics.Metric):
    """Adds hard per-class ``tp, fp, fn, tn`` counts over batches (float64).

    ``y_true``: float ``[B, H, W, K]``, K = 1 (binary, 1.0 = foreground) or
    K = C one-hot, optionally followed by a weight channel (``[B, H, W, K +
    1]``, see :func:`split_weight`): pixels of weight 0 (ignored) are counted
    nowhere; any other weight counts the pixel once (hard counts, not
    weighted). ``y_pred``: probabilities ``[B, H, W, K]``. Per batch the
    counts are exact int32 sums, then added to float64 totals (exact up to
    2**53 pixels). ``sample_weight`` is not supported.
    """

    def __init__(
        self,
        n_classes: int,
        threshold: float = 0.5,
        class_id: int | None = None,
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(name=name, dtype=dtype)
        n_classes = int(n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if class_id is not None and not 0 <= int(class_id) < n_classes:
            raise ValueError(f"class_id {class_id} is outside [0, {n_classes})")
        self.n_classes = n_classes
        self.threshold = float(threshold)
        self.class_id = None if class_id is None else int(class_id)
        self.tp = self.add_variable(shape=(n_classes,), initializer="zeros", dtype="float64", name="tp")
        self.fp = self.add_variable(shape=(n_classes,), initializer="zeros", dtype="float64", name="fp")
        self.fn = self.add_variable(shape=(n_classes,), initializer="zeros", dtype="float64", name="fn")
        self.tn = self.add_variable(shape=(n_classes,), initializer="zeros", dtype="float64", name="tn")

    def _class_ids(self, y_true, y_pred):
        """Flat int32 class ids ``[N]`` of truth and hard prediction; ignored
        pixels get the id C in both (outside the classes: counted nowhere)."""
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        k = y_pred.shape[-1]
        y_true, weight = split_weight(y_true, k)
        if k == 1:
            if self.n_classes != 2:
                raise ValueError(f"{self.name}: one output channel means a binary task, but n_classes={self.n_classes}")
            true_ids = ops.cast(y_true > 0.5, "int32")
            pred_ids = ops.cast(y_pred > self.threshold, "int32")
        else:
            if k is not None and k != self.n_classes:
                raise ValueError(f"{self.name}: {k} output channels but n_classes={self.n_classes}")
            true_ids = ops.cast(ops.argmax(y_true, axis=-1), "int32")
            pred_ids = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        if k == 1:
            true_ids, pred_ids = true_ids[..., 0], pred_ids[..., 0]
        if weight is not None:
            true_ids = ops.where(weight > 0, true_ids, self.n_classes)
            pred_ids = ops.where(weight > 0, pred_ids, self.n_classes)
        return ops.reshape(true_ids, (-1,)), ops.reshape(pred_ids, (-1,))

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise NotImplementedError(f"{self.name}: sample_weight is not supported")
        true_ids, pred_ids = self._class_ids(y_true, y_pred)
        t = ops.one_hot(true_ids, self.n_classes, dtype="int32")  # [N, C]; id C: all 0
        p = ops.one_hot(pred_ids, self.n_classes, dtype="int32")
        tp = ops.sum(t * p, axis=0)
        n_true = ops.sum(t, axis=0)
        n_pred = ops.sum(p, axis=0)
        n_pixels = ops.sum(n_true)
        fp = n_pred - tp
        fn = n_true - tp
        tn = n_pixels - tp - fp - fn
        for var, val in ((self.tp, tp), (self.fp, fp), (self.fn, fn), (self.tn, tn)):
            var.assign(var + ops.cast(val, "float64"))

    def _counts(self):
        """The accumulated ``tp, fp, fn, tn`` as float64 tensors ``[C]``."""
        return tuple(ops.convert_to_tensor(v) for v in (self.tp, self.fp, self.fn, self.tn))

    def _summarize(self, per_class):
        """One class (``class_id``) or the NaN-skipping foreground mean.

        ``per_class`` is NaN where a class is absent from truth and prediction
        (0/0 in :func:`tversky_from_counts`); a mean over no defined class is
        0/0 = NaN as well.
        """
        if self.class_id is not None:
            out = per_class[self.class_id]
        else:
            fg = per_class[1:]
            defined = ops.logical_not(ops.isnan(fg))
            total = ops.sum(ops.where(defined, fg, ops.zeros_like(fg)))
            out = total / ops.sum(ops.cast(defined, "float64"))
        return ops.cast(out, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"n_classes": self.n_classes, "threshold": self.threshold, "class_id": self.class_id})
        return config


@keras.saving.register_keras_serializable(package="unet_tf")
class DiceScore(_ConfusionCountsMetric):
    """Dataset-level Dice ``2tp / (2tp + fp + fn)`` from hard predictions.

    Without ``class_id``: the mean over foreground classes 1..C-1 (binary: the
    foreground class), skipping classes absent from both truth and prediction
    over the whole epoch (NaN if all are). With ``class_id=c``: class c alone
    (NaN if absent from both). Counts accumulate over all batches until
    ``reset_state`` (Keras resets at each epoch / evaluate call).
    """

    def __init__(
        self, n_classes: int, name: str = "dice", threshold: float = 0.5, class_id: int | None = None, dtype: Any = None
    ):
        super().__init__(n_classes, threshold=threshold, class_id=class_id, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn, _ = self._counts()
        return self._summarize(tversky_from_counts(tp, fp, fn, 0.5, 0.5))


@keras.saving.register_keras_serializable(package="unet_tf")
class IoUScore(_ConfusionCountsMetric):
    """Dataset-level IoU (Jaccard) ``tp / (tp + fp + fn)``; else as :class:`DiceScore`."""

    def __init__(
        self, n_classes: int, name: str = "iou", threshold: float = 0.5, class_id: int | None = None, dtype: Any = None
    ):
        super().__init__(n_classes, threshold=threshold, class_id=class_id, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn, _ = self._counts()
        return self._summarize(tversky_from_counts(tp, fp, fn, 1.0, 1.0))


@keras.saving.register_keras_serializable(package="unet_tf")
class PixelAccuracy(_ConfusionCountsMetric):
    """Fraction of pixels whose hard predicted class equals the true class."""

    def __init__(
        self,
        n_classes: int,
        name: str = "pixel_accuracy",
        threshold: float = 0.5,
        dtype: Any = None,
        class_id: None = None,
    ):
        if class_id is not None:
            raise ValueError("PixelAccuracy has no per-class form; class_id must be None")
        super().__init__(n_classes, threshold=threshold, class_id=None, name=name, dtype=dtype)

    def result(self):
        tp, fp, fn, tn = self._counts()
        n_pixels = tp[0] + fp[0] + fn[0] + tn[0]
        return ops.cast(ops.sum(tp) / n_pixels, self.dtype)
