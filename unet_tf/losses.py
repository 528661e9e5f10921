"""Training losses: small named losses and their weighted sums.

Shapes: ``y_true`` and ``y_pred`` are float ``[B, H, W, K]``. Binary tasks
(``n_classes == 2``) have K = 1: one sigmoid channel, the probability of class
1 (the foreground), and ``y_true`` is 1.0 where the pixel is class 1.
Multi-class tasks have K = C softmax channels and one-hot ``y_true``.

Single losses (each a registered ``keras.losses.Loss``, so a compiled model
saved as ``.keras`` reloads after ``import unet_tf``):

* :class:`WeightedBCE` -- binary cross-entropy, positive pixels weighted.
* :class:`WeightedCategoricalCE` -- categorical cross-entropy, class-weighted.
* :class:`Tversky`, :class:`Dice` (Tversky with alpha = beta = 0.5),
  :class:`FocalTversky` -- overlap losses built on :func:`soft_tversky_index`,
  which uses the same :func:`unet_tf.metrics.tversky_from_counts` formula as
  the scores, fed with soft counts.

:class:`CombinedLoss` is a weighted sum of single losses (as nnU-Net's
``compound_losses``), and :func:`make_loss` builds one from a ``--loss`` name.

Overlap losses: soft counts ``TP = sum y*p``, ``FP = sum (1-y)*p``,
``FN = sum y*(1-p)`` are summed over the batch and spatial axes for each
channel (one index per channel over the whole batch -- stable even when a
patch holds no foreground, unlike a per-image index), then averaged over the
channels. ``smooth`` (default 1) is added to numerator and denominator: it
keeps the index defined for a channel absent from the whole batch (index 1
when also not predicted) and is negligible beside the thousands of pixels of
a batch. For multi-class outputs the background channel 0 is left out unless
``include_background=True`` (as nnU-Net's default soft Dice): background
covers most pixels and its near-perfect index would dilute the signal from
rare classes; the cross-entropy term still trains it. A binary output has
one channel, the foreground, which is always used.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from .errors import UserInputError
from .metrics import tversky_from_counts

_REGISTER = keras.saving.register_keras_serializable(package="unet_tf")

# === Functional core ===


def soft_tversky_index(y_true, y_pred, alpha: float, beta: float,
                       axis: Sequence[int] | None = None, smooth: float = 1.0):
    """Soft Tversky index ``(TP + s) / (TP + alpha*FP + beta*FN + s)``.

    Args:
        y_true: targets, float ``[..., K]`` in [0, 1].
        y_pred: probabilities, same shape.
        alpha: weight of false positives; beta: weight of false negatives
            (beta > alpha favours recall, good for rare foreground).
        axis: axes summed into the soft counts; default all but the last, so
            the result has shape ``[K]`` (one index per channel over the batch).
        smooth: added to numerator and denominator.

    Returns:
        The index, shape of ``y_pred`` with ``axis`` removed.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if axis is None:
        axis = tuple(range(len(y_pred.shape) - 1))
    tp = ops.sum(y_true * y_pred, axis=axis)
    fp = ops.sum((1.0 - y_true) * y_pred, axis=axis)
    fn = ops.sum(y_true * (1.0 - y_pred), axis=axis)
    return tversky_from_counts(tp, fp, fn, alpha, beta, smooth)


def _scored_channels(y_true, y_pred, include_background: bool):
    """Drop channel 0 of a multi-channel output unless ``include_background``."""
    if include_background or y_pred.shape[-1] == 1:
        return y_true, y_pred
    if y_pred.shape[-1] is None:
        raise ValueError("the number of output channels must be known")
    return y_true[..., 1:], y_pred[..., 1:]


# === Cross-entropy losses (per pixel, averaged over all pixels) ===


@_REGISTER
class WeightedBCE(keras.losses.Loss):
    """Binary cross-entropy with foreground pixels weighted ``pos_weight``.

    Per pixel ``-(pos_weight * y * log p + (1 - y) * log(1 - p))`` (computed
    as ``(1 + (pos_weight - 1) * y) * bce(y, p)``, identical for 0/1 targets),
    averaged over all pixels of the batch. ``pos_weight=1`` is
    ``keras.losses.BinaryCrossentropy``. Probabilities are clipped to
    ``[eps, 1 - eps]`` (and when ``y_pred`` comes straight from a sigmoid
    layer, Keras computes it from the logits), so loss and gradient stay
    finite at 0 and 1. See :func:`pos_weight_from_fraction`.
    """

    def __init__(self, pos_weight: float = 1.0, name: str = "bce",
                 reduction: str = "sum_over_batch_size", dtype: Any = None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight = float(pos_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        bce = ops.binary_crossentropy(y_true, y_pred)
        if self.pos_weight != 1.0:
            bce = (1.0 + (self.pos_weight - 1.0) * y_true) * bce
        return ops.mean(bce, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["pos_weight"] = self.pos_weight
        return config


@_REGISTER
class WeightedCategoricalCE(keras.losses.Loss):
    """Categorical cross-entropy for one-hot targets, weighted by true class.

    Per pixel ``-sum_c w_c * y_c * log p_c`` (computed as
    ``(sum_c w_c y_c) * cce(y, p)``, identical for one-hot targets),
    averaged over all pixels (not divided by the weights' sum).
    ``class_weights=None`` means all 1, i.e.
    ``keras.losses.CategoricalCrossentropy``. See
    :func:`class_weights_from_fractions`.
    """

    def __init__(self, class_weights: Sequence[float] | None = None,
                 name: str = "ce", reduction: str = "sum_over_batch_size",
                 dtype: Any = None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = (None if class_weights is None
                              else tuple(float(w) for w in class_weights))

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        ce = ops.categorical_crossentropy(y_true, y_pred)
        if self.class_weights is None:
            return ce
        if y_pred.shape[-1] != len(self.class_weights):
            raise ValueError(
                f"{self.name}: {len(self.class_weights)} class weights for "
                f"{y_pred.shape[-1]} output channels")
        w = ops.convert_to_tensor(np.asarray(self.class_weights), dtype=y_pred.dtype)
        return ops.sum(y_true * w, axis=-1) * ce

    def get_config(self):
        config = super().get_config()
        config["class_weights"] = (None if self.class_weights is None
                                   else list(self.class_weights))
        return config


# === Overlap losses (one value per batch) ===


@_REGISTER
class Tversky(keras.losses.Loss):
    """``1 - mean_c TI_c`` with the soft Tversky index of each scored channel.

    Counts are summed over batch and spatial axes per channel (see the module
    docstring); the loss is one scalar per batch, so sample weights do not
    apply. Defaults alpha=0.3 (false positives), beta=0.7 (false negatives)
    favour recall of rare foreground (Salehi et al., 2017). Note that
    ``keras.losses.Tversky`` in Keras <= 3.15 applies its alpha to false
    negatives and beta to false positives, the reverse of this class.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0,
                 include_background: bool = False, name: str = "tversky",
                 reduction: str = "sum_over_batch_size", dtype: Any = None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.smooth = float(smooth)
        self.include_background = bool(include_background)

    def index(self, y_true, y_pred):
        """Per-channel soft Tversky index ``[K']`` of the scored channels."""
        y_pred = ops.convert_to_tensor(y_pred)
        y_true, y_pred = _scored_channels(y_true, y_pred, self.include_background)
        return soft_tversky_index(y_true, y_pred, self.alpha, self.beta,
                                  smooth=self.smooth)

    def call(self, y_true, y_pred):
        return 1.0 - ops.mean(self.index(y_true, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "smooth": self.smooth,
                       "include_background": self.include_background})
        return config


@_REGISTER
class Dice(Tversky):
    """Soft Dice loss ``1 - mean_c 2TP_c / (2TP_c + FP_c + FN_c)`` (smoothed).

    :class:`Tversky` with ``alpha = beta = 0.5``.
    """

    def __init__(self, smooth: float = 1.0, include_background: bool = False,
                 name: str = "dice", reduction: str = "sum_over_batch_size",
                 dtype: Any = None):
        super().__init__(alpha=0.5, beta=0.5, smooth=smooth,
                         include_background=include_background, name=name,
                         reduction=reduction, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["alpha"], config["beta"]
        return config


@_REGISTER
class FocalTversky(Tversky):
    """Focal Tversky loss ``mean_c (1 - TI_c) ** gamma`` (Abraham & Khan, 2019).

    ``gamma`` is the exponent itself (the paper's ``1/gamma``). With
    ``gamma < 1`` (default 0.75, the paper's 4/3) the loss decays more slowly
    than ``1 - TI`` as the index approaches 1, so nearly-right channels keep
    a larger gradient. ``1 - TI`` is floored at ``keras.config.epsilon()`` so
    the gradient of the power stays finite at a perfect prediction.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75,
                 smooth: float = 1.0, include_background: bool = False,
                 name: str = "focal_tversky", reduction: str = "sum_over_batch_size",
                 dtype: Any = None):
        super().__init__(alpha=alpha, beta=beta, smooth=smooth,
                         include_background=include_background, name=name,
                         reduction=reduction, dtype=dtype)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        one_minus = ops.maximum(1.0 - self.index(y_true, y_pred), keras.config.epsilon())
        return ops.mean(ops.power(one_minus, self.gamma))

    def get_config(self):
        config = super().get_config()
        config["gamma"] = self.gamma
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

    def __init__(self, losses: Sequence[Any], weights: Sequence[float] | None = None,
                 name: str | None = None, reduction: str = "sum_over_batch_size",
                 dtype: Any = None):
        parts = [keras.saving.deserialize_keras_object(l) if isinstance(l, dict) else l
                 for l in losses]
        if not parts:
            raise ValueError("CombinedLoss needs at least one loss")
        for part in parts:
            if not isinstance(part, keras.losses.Loss):
                raise TypeError(f"CombinedLoss parts must be keras Loss objects, got {part!r}")
        weights = [1.0] * len(parts) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parts):
            raise ValueError(f"{len(parts)} losses but {len(weights)} weights")
        super().__init__(name=name or "_".join(p.name for p in parts),
                         reduction=reduction, dtype=dtype)
        self.losses = parts
        self.weights = weights

    def call(self, y_true, y_pred):
        total = 0.0
        for weight, part in zip(self.weights, self.losses):
            total = total + weight * part(y_true, y_pred)
        return total

    def get_config(self):
        config = super().get_config()
        config.update({
            "losses": [keras.saving.serialize_keras_object(p) for p in self.losses],
            "weights": list(self.weights),
        })
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

LOSS_NAMES = ("auto", "bce", "bce+tversky", "bce+dice", "tversky", "dice",
              "focal_tversky", "ce", "ce+tversky", "ce+dice")


def make_loss(name: str, n_classes: int, *, alpha: float = 0.3, beta: float = 0.7,
              pos_weight: float | None = None,
              class_weights: Sequence[float] | None = None) -> keras.losses.Loss:
    """The loss for ``--loss NAME`` and a task of ``n_classes`` classes.

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
        raise UserInputError(f"--loss: unknown loss {name!r}; choose one of "
                             f"{', '.join(LOSS_NAMES)}")
    if int(n_classes) < 2:
        raise UserInputError(f"a segmentation task needs at least 2 classes, got {n_classes}")
    binary = int(n_classes) == 2
    if class_weights is not None and len(class_weights) != int(n_classes):
        raise ValueError(f"{len(class_weights)} class weights for {n_classes} classes")

    if binary:
        if pos_weight is None and class_weights is not None:
            pos_weight = float(class_weights[1]) / float(class_weights[0])
        ce = WeightedBCE(pos_weight=1.0 if pos_weight is None else pos_weight)
    else:
        ce = WeightedCategoricalCE(class_weights=class_weights)

    first, _, second = ("ce+tversky" if key == "auto" else key).partition("+")
    overlap = {"tversky": lambda: Tversky(alpha=alpha, beta=beta),
               "dice": lambda: Dice(),
               "focal_tversky": lambda: FocalTversky(alpha=alpha, beta=beta)}
    if first in overlap:
        return overlap[first]()
    if not second:
        return ce
    return CombinedLoss([ce, overlap[second]()], [1.0, 1.0])
