"""Cross-entropy losses with per-pixel weights, their weighted sum, and :func:`make_loss`
(see the package docstring)."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from unet_tf.config import LOSS_NAMES, n_outputs
from unet_tf.errors import UserInputError
from unet_tf.training.losses._overlap import Dice, FocalTversky, Tversky
from unet_tf.training.metrics import split_weight

_REGISTER = keras.saving.register_keras_serializable(package="unet_tf")

# === Pixel weights ===


def weighted_pixel_loss(per_pixel, weight, reduction: str | None = "sum_over_batch_size"):
    """Per-pixel loss ``[...]`` times its weight, normalised to ignore pixels of weight 0.

    Args:
        per_pixel: float ``[B, H, W]`` loss of every pixel.
        weight: float ``[B, H, W]`` (0 = ignored) or None (all 1: returned unchanged).
        reduction: the Keras reduction that will follow. For the mean
            reductions (``"sum_over_batch_size"``, the default, ``"mean"``,
            ``"mean_with_sample_weight"``) the map is scaled by
            ``N / N_kept`` (pixels / pixels of weight > 0), so that Keras' mean
            over all N pixels becomes ``sum(w * loss) / N_kept``: the mean over
            the pixels not ignored (0 when a batch is all ignored). Other
            reductions get ``w * loss`` unscaled.

    Returns:
        float ``[B, H, W]``; with all weights 1 exactly ``per_pixel``.
    """
    if weight is None:
        return per_pixel
    weight = ops.cast(weight, per_pixel.dtype)
    out = per_pixel * weight
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        kept = ops.mean(ops.cast(weight > 0, per_pixel.dtype))
        out = out / ops.maximum(kept, 1e-12)  # all ignored: 0 / 1e-12 = 0
    return out


# === Cross-entropy losses (per pixel, averaged over the pixels not ignored) ===


@_REGISTER
class WeightedBCE(keras.losses.Loss):
    """Binary cross-entropy with foreground pixels weighted ``pos_weight``.

    Per pixel ``-w * (pos_weight * y * log p + (1 - y) * log(1 - p))`` (computed
    as ``w * (1 + (pos_weight - 1) * y) * bce(y, p)``, identical for 0/1
    targets), with ``w`` the pixel weight of ``y_true``'s weight channel (1
    without one), averaged over the pixels of the batch not ignored (``w > 0``;
    see :func:`weighted_pixel_loss`). ``pos_weight=1`` without a weight channel
    is ``keras.losses.BinaryCrossentropy``. Probabilities are clipped to
    ``[eps, 1 - eps]`` (and when ``y_pred`` comes straight from a sigmoid
    layer, Keras computes it from the logits), so loss and gradient stay
    finite at 0 and 1. See :func:`pos_weight_from_fraction`.
    """

    def __init__(
        self, pos_weight: float = 1.0, name: str = "bce", reduction: str = "sum_over_batch_size", dtype: Any = None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight = float(pos_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true, weight = split_weight(ops.cast(y_true, y_pred.dtype), y_pred.shape[-1])
        bce = ops.binary_crossentropy(y_true, y_pred)
        if self.pos_weight != 1.0:
            bce = (1.0 + (self.pos_weight - 1.0) * y_true) * bce
        return weighted_pixel_loss(ops.mean(bce, axis=-1), weight, self.reduction)

    def get_config(self):
        config = super().get_config()
        config["pos_weight"] = self.pos_weight
        return config


@_REGISTER
class WeightedCategoricalCE(keras.losses.Loss):
    """Categorical cross-entropy for one-hot targets, weighted by true class.

    Per pixel ``-w * sum_c w_c * y_c * log p_c`` (computed as
    ``w * (sum_c w_c y_c) * cce(y, p)``, identical for one-hot targets), with
    ``w`` the pixel weight of ``y_true``'s weight channel (1 without one),
    averaged over the pixels not ignored (``w > 0``; not divided by the
    weights' sum; see :func:`weighted_pixel_loss`). ``class_weights=None``
    means all 1, i.e. (without a weight channel)
    ``keras.losses.CategoricalCrossentropy``. See
    :func:`class_weights_from_fractions`.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        name: str = "ce",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = None if class_weights is None else tuple(float(w) for w in class_weights)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true, weight = split_weight(ops.cast(y_true, y_pred.dtype), y_pred.shape[-1])
        ce = ops.categorical_crossentropy(y_true, y_pred)
        if self.class_weights is not None:
            if y_pred.shape[-1] != len(self.class_weights):
                raise ValueError(
                    f"{self.name}: {len(self.class_weights)} class weights for {y_pred.shape[-1]} output channels"
                )
            w = ops.convert_to_tensor(np.asarray(self.class_weights), dtype=y_pred.dtype)
            ce = ops.sum(y_true * w, axis=-1) * ce
        return weighted_pixel_loss(ce, weight, self.reduction)

    def get_config(self):
        config = super().get_config()
        config["class_weights"] = None if self.class_weights is None else list(self.class_weights)
        return config


# === Weighted sum ===


@_REGISTER
class CombinedLoss(keras.losses.Loss):
    """``sum_i weights[i] * losses[i](y_true, y_pred)``; each part reduced first.

    ``losses`` are ``keras.losses.Loss`` instances (or their serialized
    configs); ``weights`` default to all 1. The parts are saved in the config
    as nested serialized objects. The default name joins the parts' names
    with "_" (``bce_tversky``): TensorFlow name scopes reject "+".
    """

    def __init__(
        self,
        losses: Sequence[Any],
        weights: Sequence[float] | None = None,
        name: str | None = None,
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ):
        parts = [keras.saving.deserialize_keras_object(p) if isinstance(p, dict) else p for p in losses]
        if not parts:
            raise ValueError("CombinedLoss needs at least one loss")
        for part in parts:
            if not isinstance(part, keras.losses.Loss):
                raise TypeError(f"CombinedLoss parts must be keras Loss objects, got {part!r}")
        weights = [1.0] * len(parts) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parts):
            raise ValueError(f"{len(parts)} losses but {len(weights)} weights")
        super().__init__(name=name or "_".join(p.name for p in parts), reduction=reduction, dtype=dtype)
        self.losses = parts
        self.weights = weights

    def call(self, y_true, y_pred):
        total = 0.0
        for weight, part in zip(self.weights, self.losses):
            total = total + weight * part(y_true, y_pred)
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {"losses": [keras.saving.serialize_keras_object(p) for p in self.losses], "weights": list(self.weights)}
        )
        return config


# === Class balance helpers ===


def pos_weight_from_fraction(fg_fraction: float, cap: float = 20.0) -> float:
    """Foreground weight ``(1 - f) / f`` for :class:`WeightedBCE`.

    With it, foreground and background pixels carry equal total weight. The
    result is clipped to ``[1/cap, cap]`` (default cap 20, i.e. foreground
    fractions below about 5% are not up-weighted further): a very rare
    foreground would otherwise get a huge weight and the model would learn to
    over-predict it. ``f == 0`` gives ``cap``.
    """
    f = float(fg_fraction)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"foreground fraction must be in [0, 1], got {f}")
    if cap < 1.0:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if f == 0.0:
        return float(cap)
    return float(np.clip((1.0 - f) / f, 1.0 / cap, cap))


def class_weights_from_fractions(fractions: Sequence[float], cap: float = 10.0) -> tuple[float, ...]:
    """Median-frequency balancing for :class:`WeightedCategoricalCE`.

    ``w_c = median(f) / f_c`` (Eigen & Fergus, 2015) with ``f_c`` the pixel
    fraction of class c over the training set and the median over classes
    present (``f_c > 0``); clipped to ``[1/cap, cap]`` (default 10) so a class
    with a handful of pixels does not dominate. Absent classes get 1.0 (their
    weight multiplies no pixel).
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size < 2:
        raise ValueError(f"need one fraction per class (>= 2), got {fractions!r}")
    if np.any(f < 0) or not np.all(np.isfinite(f)):
        raise ValueError(f"class fractions must be finite and >= 0, got {fractions!r}")
    if cap < 1.0:
        raise ValueError(f"cap must be >= 1, got {cap}")
    present = f > 0
    if not present.any():
        return tuple(1.0 for _ in f)
    med = np.median(f[present])
    w = np.ones_like(f)
    w[present] = np.clip(med / f[present], 1.0 / cap, cap)
    return tuple(float(x) for x in w)


# === By name ===


def make_loss(
    name: str,
    n_classes: int,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    pos_weight: float | None = None,
    class_weights: Sequence[float] | None = None,
) -> keras.losses.Loss:
    """The loss named by ``train.loss`` for a task of ``n_classes`` classes.

    Names (see ``LOSS_NAMES``): ``auto`` is cross-entropy + Tversky(alpha,
    beta), weights 1 and 1. ``bce`` and ``ce`` both mean the cross-entropy that
    fits the task: :class:`WeightedBCE` (``pos_weight``, default 1) for
    ``n_classes == 2``, :class:`WeightedCategoricalCE` (``class_weights``,
    default none) otherwise; for binary tasks ``class_weights`` of length 2
    give ``pos_weight = w1 / w0`` when ``pos_weight`` is None. ``X+tversky`` /
    ``X+dice`` add :class:`Tversky` / :class:`Dice` with weight 1;
    ``tversky``, ``dice`` and ``focal_tversky`` are the overlap loss alone.

    Raises:
        UserInputError: unknown name (the message lists the valid ones) or
            ``n_classes < 2``.
    """
    key = str(name).strip().lower().replace(" ", "")
    if key not in LOSS_NAMES:
        raise UserInputError(f"`train.loss`: unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    if int(n_classes) < 2:
        raise UserInputError(f"a segmentation task needs at least 2 classes, got {n_classes}")
    binary = n_outputs(int(n_classes)) == 1  # one sigmoid channel
    if class_weights is not None and len(class_weights) != int(n_classes):
        raise ValueError(f"{len(class_weights)} class weights for {n_classes} classes")

    if binary:
        if pos_weight is None and class_weights is not None:
            pos_weight = float(class_weights[1]) / float(class_weights[0])
        ce = WeightedBCE(pos_weight=1.0 if pos_weight is None else pos_weight)
    else:
        ce = WeightedCategoricalCE(class_weights=class_weights)

    first, _, second = ("ce+tversky" if key == "auto" else key).partition("+")
    overlap = {
        "tversky": lambda: Tversky(alpha=alpha, beta=beta),
        "dice": lambda: Dice(),
        "focal_tversky": lambda: FocalTversky(alpha=alpha, beta=beta),
    }
    if first in overlap:
        return overlap[first]()
    if not second:
        return ce
    return CombinedLoss([ce, overlap[second]()], [1.0, 1.0])
