"""Training losses: small named losses and their weighted sums.

Shapes: ``y_pred`` is float ``[B, H, W, K]``; ``y_true`` is ``[B, H, W, K]``
or ``[B, H, W, K + 1]``: the targets followed by a per-pixel weight channel, as
:func:`unet_tf.data.pipeline.make_dataset` yields (K is read from ``y_pred``, see
:func:`unet_tf.training.metrics.split_weight`). Binary tasks (``n_classes == 2``) have
K = 1: one sigmoid channel, the probability of class 1 (the foreground), and
``y_true`` is 1.0 where the pixel is class 1. Multi-class tasks have K = C
softmax channels and one-hot ``y_true``.

Weight channel: weight 0 marks an ignored pixel (nnU-Net's ignore label),
which counts in no term of any loss. The cross-entropy losses multiply each
pixel's term by its weight (U-Net separation-border weights, Ronneberger et
al. 2015, eq. 2) and average over the pixels not ignored. The overlap losses
use the weight only as a 0/1 mask (ignored or not): a border weight of 10
does not count a pixel ten times in TP/FP/FN. Without the channel every pixel
has weight 1 and every loss is exactly what it was without it.

Single losses (each a registered ``keras.losses.Loss``, so a compiled model
saved as ``.keras`` reloads after ``import unet_tf``):

* :class:`WeightedBCE` -- binary cross-entropy, positive pixels weighted.
* :class:`WeightedCategoricalCE` -- categorical cross-entropy, class-weighted.
* :class:`Tversky`, :class:`Dice` (Tversky with alpha = beta = 0.5),
  :class:`FocalTversky` -- overlap losses built on :func:`soft_tversky_index`,
  which uses the same :func:`unet_tf.evaluation.scores.tversky_from_counts` formula as
  the scores, fed with soft counts.

:class:`CombinedLoss` is a weighted sum of single losses (as nnU-Net's
``compound_losses``), and :func:`make_loss` builds one from a loss name (``TrainConfig.loss``).

The cross-entropy losses, their sum and :func:`make_loss` are in ``_weighted.py``, the
overlap losses in ``_overlap.py``; import them from here.
"""

from unet_tf.training.losses._overlap import Dice, FocalTversky, Tversky, soft_tversky_index
from unet_tf.training.losses._weighted import (
    CombinedLoss,
    WeightedBCE,
    WeightedCategoricalCE,
    class_weights_from_fractions,
    make_loss,
    pos_weight_from_fraction,
    weighted_pixel_loss,
)

__all__ = [
    "CombinedLoss",
    "Dice",
    "FocalTversky",
    "Tversky",
    "WeightedBCE",
    "WeightedCategoricalCE",
    "class_weights_from_fractions",
    "make_loss",
    "pos_weight_from_fraction",
    "soft_tversky_index",
    "weighted_pixel_loss",
]
