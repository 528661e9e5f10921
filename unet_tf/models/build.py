"""``build_model(cfg, n_classes)``: the U-Net or the Deep ResUNet a :class:`ModelConfig` describes.

Importing this module registers every unet_tf Keras object (layers, losses, metrics).
"""

from __future__ import annotations

from unet_tf.config import DEFAULT_DEPTH, MODEL_NAMES, UPSAMPLING_NAMES, ModelConfig
from unet_tf.errors import UserInputError
from unet_tf.models import blocks, fused_norm, info_layer
from unet_tf.models.resunet import build_resunet
from unet_tf.models.unet import build_unet
from unet_tf.training import losses, metrics

# Every module with a registered Keras object (``unet_tf>Name``), so that after importing this module
# keras.models.load_model(path, compile=True) restores a run's layers, info, loss and metrics.
REGISTERING_MODULES = (blocks, fused_norm, info_layer, losses, metrics)


def check_input_size(size: int, depth: int, what: str = "patch size") -> None:
    """Raise :class:`UserInputError` unless ``size`` is a positive multiple of ``2**depth``."""
    factor = 2**depth
    if size > 0 and size % factor == 0:
        return
    suggestion = max(factor, round(size / factor) * factor)
    raise UserInputError(
        f"{what} {size} is not divisible by 2**{depth} = {factor} (the model's depth {depth}); use e.g. {suggestion}"
    )


def resolved_depth(cfg: ModelConfig) -> int:
    """``cfg.depth``, or the architecture's own default (U-Net 4, Deep ResUNet 3)."""
    if cfg.model not in MODEL_NAMES:
        raise UserInputError(f"model {cfg.model!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
    return DEFAULT_DEPTH[cfg.model] if cfg.depth is None else cfg.depth


def build_model(cfg: ModelConfig, n_classes: int):
    """The ``keras.Model`` that ``cfg`` describes, for ``n_classes`` classes (>= 2).

    Output: one sigmoid channel (P(class 1)) when ``n_classes == 2``, else
    ``n_classes`` softmax channels; input ``(B, H, W, 1)`` float32 with H, W
    divisible by ``2**resolved_depth(cfg)``.
    """
    if cfg.model not in MODEL_NAMES:
        raise UserInputError(f"model {cfg.model!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
    if cfg.upsampling not in UPSAMPLING_NAMES:
        raise UserInputError(f"upsampling {cfg.upsampling!r} is unknown; choose one of {', '.join(UPSAMPLING_NAMES)}")
    depth = resolved_depth(cfg)
    if depth < 1:
        raise UserInputError(f"depth must be at least 1, got {depth}")
    if cfg.base_filters < 1:
        raise UserInputError(f"base filters must be at least 1, got {cfg.base_filters}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserInputError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if n_classes < 2:
        raise UserInputError(f"a segmentation needs at least 2 classes, got {n_classes}")
    builder = build_unet if cfg.model == "unet" else build_resunet
    return builder(
        n_classes=n_classes,
        base_filters=cfg.base_filters,
        depth=depth,
        upsampling=cfg.upsampling,
        dropout=cfg.dropout,
        attention=cfg.attention,
    )
