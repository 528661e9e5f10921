"""The classic U-Net (Ronneberger, Fischer & Brox 2015) with same padding."""

from __future__ import annotations

import keras
from keras import layers

from unet_tf.config import UPSAMPLING_NAMES, ModelConfig
from unet_tf.models.blocks import apply_conv_block, apply_head, apply_self_attention, apply_upsample


def build_unet(
    n_classes: int = 2,
    base_filters: int = ModelConfig.base_filters,
    depth: int = 4,
    upsampling: str = ModelConfig.upsampling,
    dropout: float = ModelConfig.dropout,
    attention: bool = ModelConfig.attention,
    batch_norm: bool = True,
    name: str = "unet",
) -> keras.Model:
    """U-Net with ``depth`` 2x2 max-pool downsamplings.

    Encoder stage ``enc{i}`` (i = 1..depth): two 3x3 conv -> BN -> ReLU with
    ``base_filters * 2**(i-1)`` filters, then ``enc{i}_pool``. The ``bottleneck``
    has ``base_filters * 2**depth`` filters, then optional ``bottleneck_dropout``
    and ``bottleneck_attn`` (multi-head self-attention over all positions).
    Decoder stage ``dec{i}`` (i = depth..1): ``dec{i}_up`` (nearest or bilinear
    ``UpSampling2D`` + 2x2 conv, or a 2x2 stride-2 ``Conv2DTranspose``) to
    ``base_filters * 2**(i-1)`` filters, concatenation with ``enc{i}``
    (``dec{i}_concat``), two conv blocks. Head: 1x1 conv + sigmoid (one channel,
    P(class 1)) when ``n_classes == 2``, else ``n_classes`` softmax channels;
    the output layer ``probabilities`` is float32.

    Input ``image``: float32 ``(B, H, W, 1)`` with H and W divisible by
    ``2**depth``; output ``(B, H, W, 1 or n_classes)``.

    Defaults are :class:`unet_tf.config.ModelConfig`'s (``depth`` 4: what
    :func:`unet_tf.models.build.resolved_depth` gives a U-Net).
    """
    if upsampling not in UPSAMPLING_NAMES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_NAMES}, got {upsampling!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")

    # === Functional Model ===
    inputs = keras.Input((None, None, 1), name="image")
    x = inputs
    skips = []
    for i in range(1, depth + 1):
        x = apply_conv_block(x, base_filters * 2 ** (i - 1), batch_norm=batch_norm, name=f"enc{i}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)

    x = apply_conv_block(x, base_filters * 2**depth, batch_norm=batch_norm, name="bottleneck")
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    if attention:
        x = apply_self_attention(x, name="bottleneck_attn")

    for i in range(depth, 0, -1):
        filters = base_filters * 2 ** (i - 1)
        x = apply_upsample(x, upsampling, filters=filters, name=f"dec{i}_up")
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i - 1]])
        x = apply_conv_block(x, filters, batch_norm=batch_norm, name=f"dec{i}")

    outputs = apply_head(x, n_classes)
    return keras.Model(inputs, outputs, name=name)
