"""Deep Residual U-Net (Zhang, Liu & Wang 2018, "Road Extraction by Deep Residual U-Net")."""

from __future__ import annotations

import keras
from keras import layers

from unet_tf.config import UPSAMPLING_NAMES, ModelConfig
from unet_tf.models.blocks import (
    apply_head,
    apply_residual_stem,
    apply_residual_unit,
    apply_self_attention,
    apply_upsample,
)


def build_resunet(
    n_classes: int = 2,
    base_filters: int = ModelConfig.base_filters,
    depth: int = 3,
    upsampling: str = ModelConfig.upsampling,
    dropout: float = ModelConfig.dropout,
    attention: bool = ModelConfig.attention,
    name: str = "resunet",
) -> keras.Model:
    """Deep ResUNet with ``depth`` stride-2 downsamplings (the last one enters the bridge).

    ``enc1``: the stem (conv3x3 -> BN -> ReLU -> conv3x3, plus a 1x1-conv
    shortcut) with ``base_filters`` at full resolution. ``enc{i}`` (i = 2..depth):
    a pre-activation residual unit whose first conv has stride 2, with
    ``base_filters * 2**(i-1)`` filters and a strided 1x1 projection shortcut.
    ``bridge``: the same with stride 2 and ``base_filters * 2**depth`` filters,
    then optional ``bridge_dropout`` and ``bridge_attn`` (self-attention).
    Decoder ``dec{i}`` (i = depth..1): ``dec{i}_up`` (``UpSampling2D`` nearest or
    bilinear, or a 2x2 stride-2 ``Conv2DTranspose`` to the stage width),
    concatenation with ``enc{i}``, a residual unit with ``base_filters * 2**(i-1)``
    filters. Head: 1x1 conv + sigmoid (one channel) for ``n_classes == 2``,
    else softmax over ``n_classes`` channels; the output layer ``probabilities``
    is float32. At ``base_filters=64, depth=3`` the widths are 64/128/256 and
    512 in the bridge, as in the paper.

    Input ``image``: float32 ``(B, H, W, 1)`` with H and W divisible by
    ``2**depth``; output ``(B, H, W, 1 or n_classes)``.

    Defaults are :class:`unet_tf.config.ModelConfig`'s (``depth`` 3: what
    :func:`unet_tf.models.build.resolved_depth` gives a Deep ResUNet).
    """
    if upsampling not in UPSAMPLING_NAMES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_NAMES}, got {upsampling!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")

    # === Functional Model ===
    inputs = keras.Input((None, None, 1), name="image")
    x = apply_residual_stem(inputs, base_filters, name="enc1")
    skips = [x]
    for i in range(2, depth + 1):
        x = apply_residual_unit(x, base_filters * 2 ** (i - 1), strides=2, name=f"enc{i}")
        skips.append(x)

    x = apply_residual_unit(x, base_filters * 2**depth, strides=2, name="bridge")
    if dropout > 0:
        x = layers.Dropout(dropout, name="bridge_dropout")(x)
    if attention:
        x = apply_self_attention(x, name="bridge_attn")

    for i in range(depth, 0, -1):
        filters = base_filters * 2 ** (i - 1)
        x = apply_upsample(x, upsampling, filters=filters if upsampling == "transpose" else None, name=f"dec{i}_up")
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i - 1]])
        x = apply_residual_unit(x, filters, name=f"dec{i}")

    outputs = apply_head(x, n_classes)
    return keras.Model(inputs, outputs, name=name)
