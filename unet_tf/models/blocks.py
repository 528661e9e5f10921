"""Building blocks shared by the U-Net and the Deep ResUNet.

Each ``apply_*`` helper takes a 4-D feature map ``x`` of shape
``(batch, height, width, channels)`` and returns a new one; every layer it
creates is named ``f"{name}_<part>"`` so model summaries read like prose.
The two small reshape layers are registered so that models holding them save
to and load from ``.keras`` files with only ``import unet_tf``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from unet_tf.config import UPSAMPLING_NAMES, n_outputs
from unet_tf.models.fused_norm import FusedBatchNormalization

# Short CPU runs see a few hundred steps: Keras' default 0.99 leaves the moving
# statistics far from the batch statistics for most of them, and validation
# (which uses the moving ones) collapses. 0.9 tracks within ~20 steps.
BN_MOMENTUM = 0.9


# === Layers ===


@keras.saving.register_keras_serializable(package="unet_tf")
class FlattenSpatial(layers.Layer):
    """``(B, H, W, C) -> (B, H*W, C)`` for inputs of any, even unknown, H and W."""

    def call(self, x):
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], -1, shape[3]))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        hw = None if h is None or w is None else h * w
        return (b, hw, c)


@keras.saving.register_keras_serializable(package="unet_tf")
class UnflattenSpatial(layers.Layer):
    """``[(B, H*W, C), (B, H, W, C)] -> (B, H, W, C)``: tokens back to the reference grid."""

    def call(self, inputs):
        tokens, reference = inputs
        return ops.reshape(tokens, ops.shape(reference))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])


# === Blocks ===


def apply_conv_block(
    x, filters: int, kernel_size: int = 3, n_convs: int = 2, batch_norm: bool = True, name: str = "conv_block"
):
    """``n_convs`` x (conv ``kernel_size`` same padding -> BatchNorm -> ReLU).

    BatchNorm is ``FusedBatchNormalization`` (the same layer, trained by TF's fused kernel).

    The convolutions have no bias when a BatchNorm follows them.
    Shapes: ``(B, H, W, C_in) -> (B, H, W, filters)``.
    Layers: ``{name}_conv{i}``, ``{name}_bn{i}``, ``{name}_relu{i}`` for i = 1..n_convs.
    """
    for i in range(1, n_convs + 1):
        x = layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def apply_upsample(x, mode: str = "nearest", filters: int | None = None, name: str = "up"):
    """Double height and width.

    ``mode="nearest"`` or ``"bilinear"``: ``UpSampling2D`` (layer ``{name}``), then,
    when ``filters`` is given, a 2x2 same-padding convolution to ``filters``
    channels (layer ``{name}_conv``). ``mode="transpose"``: one 2x2 stride-2
    ``Conv2DTranspose`` to ``filters`` channels (layer ``{name}``; ``filters``
    defaults to the input channels).
    Shapes: ``(B, H, W, C) -> (B, 2H, 2W, filters or C)``.
    """
    if mode == "transpose":
        filters = filters if filters is not None else x.shape[-1]
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", kernel_initializer="he_normal", name=name)(
            x
        )
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLING_NAMES)}, got {mode!r}")
    x = layers.UpSampling2D(2, interpolation=mode, name=name)(x)
    if filters is not None:
        x = layers.Conv2D(filters, 2, padding="same", kernel_initializer="he_normal", name=f"{name}_conv")(x)
    return x


def apply_residual_unit(x, filters: int, strides: int = 1, name: str = "res"):
    """Pre-activation residual unit (He et al. 2016; Zhang, Liu & Wang 2018).

    Residual path: BN -> ReLU -> conv3x3 (stride ``strides``) -> BN -> ReLU -> conv3x3.
    Shortcut: identity when shapes match, else a 1x1 conv with stride ``strides``.
    Shapes: ``(B, H, W, C) -> (B, H/strides, W/strides, filters)``.
    Layers: ``{name}_bn1``, ``_relu1``, ``_conv1``, ``_bn2``, ``_relu2``, ``_conv2``,
    ``_shortcut`` (when projecting), ``_add``.
    """
    shortcut = x
    y = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv1",
    )(y)
    y = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, kernel_initializer="he_normal", name=f"{name}_shortcut")(
            x
        )
    return layers.Add(name=f"{name}_add")([y, shortcut])


def apply_residual_stem(x, filters: int, name: str = "enc1"):
    """Deep ResUNet input unit: conv3x3 -> BN -> ReLU -> conv3x3, plus a 1x1-conv shortcut.

    Shapes: ``(B, H, W, C) -> (B, H, W, filters)``.
    Layers: ``{name}_conv1``, ``_bn1``, ``_relu1``, ``_conv2``, ``_shortcut``, ``_add``.
    """
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv1")(
        x
    )
    y = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    shortcut = layers.Conv2D(filters, 1, kernel_initializer="he_normal", name=f"{name}_shortcut")(x)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def apply_self_attention(x, num_heads: int = 4, key_dim: int | None = None, name: str = "attn"):
    """Multi-head self-attention over all spatial positions, residual add + LayerNorm.

    ``key_dim`` defaults to ``max(channels // num_heads, 4)``. No positional
    encoding: the convolutions before it (with zero padding) carry position.
    Shapes: ``(B, H, W, C) -> (B, H, W, C)``; H and W may be unknown when built.
    Cost grows with ``(H*W)**2``: meant for the coarsest feature map.
    Layers: ``{name}_flatten``, ``_mha``, ``_add``, ``_norm``, ``_unflatten``.
    """
    channels = x.shape[-1]
    if key_dim is None:
        key_dim = max(channels // num_heads, 4)
    tokens = FlattenSpatial(name=f"{name}_flatten")(x)
    attended = layers.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim, name=f"{name}_mha")(tokens, tokens)
    tokens = layers.Add(name=f"{name}_add")([tokens, attended])
    tokens = layers.LayerNormalization(name=f"{name}_norm")(tokens)
    return UnflattenSpatial(name=f"{name}_unflatten")([tokens, x])


def apply_head(x, n_classes: int, name: str = "head"):
    """1x1 conv to the output channels and the output activation (float32).

    The channels are :func:`unet_tf.config.n_outputs`: for ``n_classes == 2``
    one sigmoid channel, the probability of class 1; for ``n_classes > 2``,
    ``n_classes`` softmax channels.
    Shapes: ``(B, H, W, C) -> (B, H, W, 1 or n_classes)``, float32 also under
    mixed precision. Layers: ``{name}_conv`` and ``probabilities``.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    channels = n_outputs(n_classes)
    activation = "sigmoid" if channels == 1 else "softmax"
    x = layers.Conv2D(channels, 1, name=f"{name}_conv")(x)
    return layers.Activation(activation, dtype="float32", name="probabilities")(x)
