"""Overlap losses: soft Tversky, Dice and focal Tversky (one value per batch).

Same shapes and weight channel as the cross-entropy losses (:mod:`unet_tf.training.losses`):
``y_pred`` ``[B, H, W, K]``, ``y_true`` ``[B, H, W, K]`` or ``[B, H, W, K + 1]`` with a last
weight channel, used here ONLY as a 0/1 mask: pixels of weight 0 (ignored) are left out of TP,
FP and FN, and every other pixel counts once, whatever its weight (a separation-border weight multiplies
the cross-entropy term, not the overlap counts).

Soft counts ``TP = sum y*p``, ``FP = sum (1-y)*p``,
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
from keras import ops

from unet_tf.evaluation.scores import tversky_from_counts
from unet_tf.training.metrics import split_weight

# registered in package "unet_tf" like every unet_tf Keras object: saved models name these "unet_tf>Tversky", ...
_REGISTER = keras.saving.register_keras_serializable(package="unet_tf")

# === Functional core ===


def soft_tversky_index(
    y_true, y_pred, alpha: float, beta: float, axis: Sequence[int] | None = None, smooth: float = 1.0, keep=None
):
    """Soft Tversky index ``(TP + s) / (TP + alpha*FP + beta*FN + s)``.

    Args:
        y_true: targets, float ``[..., K]`` in [0, 1].
        y_pred: probabilities, same shape.
        alpha: weight of false positives; beta: weight of false negatives
            (beta > alpha favours recall, good for rare foreground).
        axis: axes summed into the soft counts; default all but the last, so
            the result has shape ``[K]`` (one index per channel over the batch).
        smooth: added to numerator and denominator.
        keep: optional 0/1 float ``[...]`` (``y_pred``'s shape without the
            channel axis): pixels with 0 are left out of TP, FP and FN.
            Default None: every pixel counts.

    Returns:
        The index, shape of ``y_pred`` with ``axis`` removed.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if axis is None:
        axis = tuple(range(len(y_pred.shape) - 1))
    if keep is not None:
        y_pred = y_pred * ops.expand_dims(ops.cast(keep, y_pred.dtype), -1)
        y_true = y_true * ops.expand_dims(ops.cast(keep, y_pred.dtype), -1)
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


# === Overlap losses (one value per batch) ===


@_REGISTER
class Tversky(keras.losses.Loss):
    """``1 - mean_c TI_c`` with the soft Tversky index of each scored channel.

    Counts are summed over batch and spatial axes per channel (see the module
    docstring); the loss is one scalar per batch, so sample weights do not
    apply. A weight channel in ``y_true`` is used only as a 0/1 mask: pixels
    of weight 0 (ignored) are left out of TP, FP and FN; every other pixel
    counts once, whatever its weight. Defaults alpha=0.3 (false positives), beta=0.7 (false negatives)
    favour recall of rare foreground (Salehi et al., 2017). Note that
    ``keras.losses.Tversky`` in Keras <= 3.15 applies its alpha to false
    negatives and beta to false positives, the reverse of this class.
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        include_background: bool = False,
        name: str = "tversky",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.smooth = float(smooth)
        self.include_background = bool(include_background)

    def index(self, y_true, y_pred):
        """Per-channel soft Tversky index ``[K']`` of the scored channels."""
        y_pred = ops.convert_to_tensor(y_pred)
        y_true, weight = split_weight(y_true, y_pred.shape[-1])
        keep = None if weight is None else ops.cast(weight > 0, y_pred.dtype)
        y_true, y_pred = _scored_channels(y_true, y_pred, self.include_background)
        return soft_tversky_index(y_true, y_pred, self.alpha, self.beta, smooth=self.smooth, keep=keep)

    def call(self, y_true, y_pred):
        return 1.0 - ops.mean(self.index(y_true, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "beta": self.beta,
                "smooth": self.smooth,
                "include_background": self.include_background,
            }
        )
        return config


@_REGISTER
class Dice(Tversky):
    """Soft Dice loss ``1 - mean_c 2TP_c / (2TP_c + FP_c + FN_c)`` (smoothed).

    :class:`Tversky` with ``alpha = beta = 0.5``.
    """

    def __init__(
        self,
        smooth: float = 1.0,
        include_background: bool = False,
        name: str = "dice",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ):
        super().__init__(
            alpha=0.5,
            beta=0.5,
            smooth=smooth,
            include_background=include_background,
            name=name,
            reduction=reduction,
            dtype=dtype,
        )

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

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1.0,
        include_background: bool = False,
        name: str = "focal_tversky",
        reduction: str = "sum_over_batch_size",
        dtype: Any = None,
    ):
        super().__init__(
            alpha=alpha,
            beta=beta,
            smooth=smooth,
            include_background=include_background,
            name=name,
            reduction=reduction,
            dtype=dtype,
        )
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        one_minus = ops.maximum(1.0 - self.index(y_true, y_pred), keras.config.epsilon())
        return ops.mean(ops.power(one_minus, self.gamma))

    def get_config(self):
        config = super().get_config()
        config["gamma"] = self.gamma
        return config
