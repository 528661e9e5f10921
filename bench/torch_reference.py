"""The unet_tf U-Net and Deep ResUNet, layer for layer, in PyTorch: the speed reference.

``build_torch_unet`` mirrors :func:`unet_tf.models.build_unet` and
``build_torch_resunet`` mirrors :func:`unet_tf.models.build_resunet` (no
dropout, no attention): same layers, same order, same widths, same padding
(TensorFlow's "same" padding of an even or strided kernel puts the extra row
and column at the bottom and right; so does this module), BatchNorm epsilon
1e-3 and momentum 0.9 (PyTorch's ``momentum=0.1``), bias only where the Keras
layer has one, the upsampled map first in each concatenation. Every module is
named after its Keras layer (``enc1_conv1``, ``dec4_up_conv``, ...), so
:func:`load_keras_weights` copies a Keras model's weights in by name and
:func:`check_against_keras` shows that both give the same output.

Run it to print the parameter counts of both frameworks and the largest output
difference on random input (PyTorch is an optional benchmark dependency:
``pip install torch==2.13.0``):

    python bench/torch_reference.py [--base-filters 16] [--upsampling nearest]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_MOMENTUM = 0.9  # unet_tf.models.blocks.BN_MOMENTUM
KERAS_BN_EPSILON = 1e-3  # keras.layers.BatchNormalization default
UPSAMPLING_MODES = ("nearest", "bilinear", "transpose")
# the 2x2 "same" convolution after each upsampling pads one row and column at the end, as Keras does
warnings.filterwarnings("ignore", message=".*padding='same' with even kernel.*")


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON, momentum=1.0 - KERAS_BN_MOMENTUM)


class StridedSameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding for stride 2 (extra row/column at the end)."""

    def forward(self, x):
        k = self.kernel_size[0]
        h, w = x.shape[-2:]
        s = self.stride[0]
        pad_h = max((-(-h // s) - 1) * s + k - h, 0)
        pad_w = max((-(-w // s) - 1) * s + k - w, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


class _KerasLike(nn.Module):
    """Modules in one flat ``nn.ModuleDict`` keyed by the Keras layer names."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict()

    def add(self, name: str, module: nn.Module) -> None:
        self.layers[name] = module

    def __getitem__(self, name: str) -> nn.Module:
        return self.layers[name]

    # --- blocks, mirroring unet_tf.models.blocks ---

    def _make_conv_block(self, name: str, c_in: int, filters: int, n_convs: int = 2) -> None:
        for i in range(1, n_convs + 1):
            self.add(f"{name}_conv{i}", nn.Conv2d(c_in, filters, 3, padding=1, bias=False))
            self.add(f"{name}_bn{i}", _bn(filters))
            c_in = filters

    def _conv_block(self, x, name: str, n_convs: int = 2):
        for i in range(1, n_convs + 1):
            x = F.relu(self[f"{name}_bn{i}"](self[f"{name}_conv{i}"](x)))
        return x

    def _make_upsample(self, name: str, c_in: int, mode: str, filters: int | None) -> int:
        if mode == "transpose":
            filters = c_in if filters is None else filters
            self.add(name, nn.ConvTranspose2d(c_in, filters, 2, stride=2))
            return filters
        if filters is not None:
            self.add(f"{name}_conv", nn.Conv2d(c_in, filters, 2, padding="same"))
            return filters
        return c_in

    def _upsample(self, x, name: str, mode: str):
        if mode == "transpose":
            return self[name](x)
        if mode == "nearest":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        else:  # Keras UpSampling2D bilinear = half-pixel centres = align_corners=False
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        conv = f"{name}_conv"
        return self[conv](x) if conv in self.layers else x

    def _make_residual_unit(self, name: str, c_in: int, filters: int, strides: int = 1) -> None:
        self.add(f"{name}_bn1", _bn(c_in))
        conv1 = StridedSameConv if strides != 1 else nn.Conv2d
        self.add(f"{name}_conv1", conv1(c_in, filters, 3, stride=strides, padding=0 if strides != 1 else 1, bias=False))
        self.add(f"{name}_bn2", _bn(filters))
        self.add(f"{name}_conv2", nn.Conv2d(filters, filters, 3, padding=1))
        if strides != 1 or c_in != filters:
            self.add(f"{name}_shortcut", nn.Conv2d(c_in, filters, 1, stride=strides))

    def _residual_unit(self, x, name: str):
        y = self[f"{name}_conv1"](F.relu(self[f"{name}_bn1"](x)))
        y = self[f"{name}_conv2"](F.relu(self[f"{name}_bn2"](y)))
        shortcut = f"{name}_shortcut"
        return y + (self[shortcut](x) if shortcut in self.layers else x)

    def _make_head(self, c_in: int, n_classes: int) -> None:
        self.n_classes = n_classes
        self.add("head_conv", nn.Conv2d(c_in, 1 if n_classes == 2 else n_classes, 1))

    def _head(self, x):
        x = self["head_conv"](x)
        return torch.sigmoid(x) if self.n_classes == 2 else torch.softmax(x, dim=1)


class TorchUNet(_KerasLike):
    """:func:`unet_tf.models.build_unet` (dropout 0, no attention) in PyTorch, NCHW in and out."""

    def __init__(
        self,
        n_classes: int = 2,
        base_filters: int = 32,
        depth: int = 4,
        upsampling: str = "nearest",
        in_channels: int = 1,
    ):
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        self.depth, self.upsampling = depth, upsampling
        c = in_channels
        for i in range(1, depth + 1):
            self._make_conv_block(f"enc{i}", c, base_filters * 2 ** (i - 1))
            c = base_filters * 2 ** (i - 1)
        self._make_conv_block("bottleneck", c, base_filters * 2**depth)
        c = base_filters * 2**depth
        for i in range(depth, 0, -1):
            filters = base_filters * 2 ** (i - 1)
            up = self._make_upsample(f"dec{i}_up", c, upsampling, filters)
            self._make_conv_block(f"dec{i}", up + filters, filters)
            c = filters
        self._make_head(c, n_classes)

    def forward(self, x):
        skips = []
        for i in range(1, self.depth + 1):
            x = self._conv_block(x, f"enc{i}")
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self._conv_block(x, "bottleneck")
        for i in range(self.depth, 0, -1):
            x = self._upsample(x, f"dec{i}_up", self.upsampling)
            x = torch.cat([x, skips[i - 1]], dim=1)
            x = self._conv_block(x, f"dec{i}")
        return self._head(x)


class TorchResUNet(_KerasLike):
    """:func:`unet_tf.models.build_resunet` (dropout 0, no attention) in PyTorch, NCHW in and out."""

    def __init__(
        self,
        n_classes: int = 2,
        base_filters: int = 64,
        depth: int = 3,
        upsampling: str = "nearest",
        in_channels: int = 1,
    ):
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        self.depth, self.upsampling = depth, upsampling
        # stem: conv3x3 -> BN -> ReLU -> conv3x3, plus a 1x1-conv shortcut
        self.add("enc1_conv1", nn.Conv2d(in_channels, base_filters, 3, padding=1, bias=False))
        self.add("enc1_bn1", _bn(base_filters))
        self.add("enc1_conv2", nn.Conv2d(base_filters, base_filters, 3, padding=1))
        self.add("enc1_shortcut", nn.Conv2d(in_channels, base_filters, 1))
        widths = [base_filters]
        for i in range(2, depth + 1):
            self._make_residual_unit(f"enc{i}", widths[-1], base_filters * 2 ** (i - 1), strides=2)
            widths.append(base_filters * 2 ** (i - 1))
        self._make_residual_unit("bridge", widths[-1], base_filters * 2**depth, strides=2)
        c = base_filters * 2**depth
        for i in range(depth, 0, -1):
            filters = base_filters * 2 ** (i - 1)
            up = self._make_upsample(f"dec{i}_up", c, upsampling, filters if upsampling == "transpose" else None)
            self._make_residual_unit(f"dec{i}", up + widths[i - 1], filters)
            c = filters
        self._make_head(c, n_classes)

    def forward(self, x):
        y = F.relu(self["enc1_bn1"](self["enc1_conv1"](x)))
        x = self["enc1_conv2"](y) + self["enc1_shortcut"](x)
        skips = [x]
        for i in range(2, self.depth + 1):
            x = self._residual_unit(x, f"enc{i}")
            skips.append(x)
        x = self._residual_unit(x, "bridge")
        for i in range(self.depth, 0, -1):
            x = self._upsample(x, f"dec{i}_up", self.upsampling)
            x = torch.cat([x, skips[i - 1]], dim=1)
            x = self._residual_unit(x, f"dec{i}")
        return self._head(x)


def build_torch_model(
    model: str = "unet",
    n_classes: int = 2,
    base_filters: int = 16,
    depth: int | None = None,
    upsampling: str = "nearest",
) -> _KerasLike:
    """The PyTorch twin of ``unet_tf.models.build_model`` for ``model`` "unet" or "resunet"."""
    if model == "unet":
        return TorchUNet(n_classes, base_filters, 4 if depth is None else depth, upsampling)
    if model == "resunet":
        return TorchResUNet(n_classes, base_filters, 3 if depth is None else depth, upsampling)
    raise ValueError(f"model must be unet or resunet, got {model!r}")


# === Counting and checking against Keras ===


def torch_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, and all weights the way Keras counts them (plus BN running stats)."""
    trainable = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return {"trainable": trainable, "total": trainable + stats}


def keras_counts(model) -> dict[str, int]:
    """Trainable weights, and ``model.count_params()`` (which includes BN moving statistics)."""
    trainable = sum(_size(w.shape) for w in model.trainable_weights)
    return {"trainable": trainable, "total": int(model.count_params())}


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


@torch.no_grad()
def load_keras_weights(torch_model: _KerasLike, keras_model) -> None:
    """Copy every weight of ``keras_model`` into the module of the same name."""
    for layer in keras_model.layers:
        weights = [w.numpy() for w in layer.weights]
        if not weights:
            continue
        module = torch_model[layer.name]
        if isinstance(module, nn.BatchNorm2d):
            gamma, beta, mean, var = weights
            module.weight.copy_(torch.from_numpy(gamma))
            module.bias.copy_(torch.from_numpy(beta))
            module.running_mean.copy_(torch.from_numpy(mean))
            module.running_var.copy_(torch.from_numpy(var))
        elif isinstance(module, nn.ConvTranspose2d):  # Keras (kh, kw, out, in) -> (in, out, kh, kw)
            module.weight.copy_(torch.from_numpy(weights[0]).permute(3, 2, 0, 1))
            module.bias.copy_(torch.from_numpy(weights[1]))
        else:  # Conv2d: Keras (kh, kw, in, out) -> (out, in, kh, kw)
            module.weight.copy_(torch.from_numpy(weights[0]).permute(3, 2, 0, 1))
            if len(weights) > 1:
                module.bias.copy_(torch.from_numpy(weights[1]))
            elif module.bias is not None:
                raise ValueError(f"{layer.name}: PyTorch has a bias, Keras has none")


def check_against_keras(
    model: str = "unet",
    base_filters: int = 16,
    depth: int | None = None,
    upsampling: str = "nearest",
    size: int = 64,
    batch: int = 2,
) -> dict:
    """Build both, copy the Keras weights across, compare counts and outputs.

    Returns the counts of both frameworks and the largest absolute output
    difference in inference mode (moving statistics) and in training mode
    (batch statistics).
    """
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from unet_tf.models import build_resunet, build_unet

    builder = build_unet if model == "unet" else build_resunet
    kwargs = {} if depth is None else {"depth": depth}
    keras_model = builder(n_classes=2, base_filters=base_filters, upsampling=upsampling, **kwargs)
    torch_model = build_torch_model(model, 2, base_filters, depth, upsampling)
    # non-trivial BN statistics so that the inference-mode check means something
    rng = np.random.default_rng(0)
    for layer in keras_model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            n = layer.weights[0].shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)]
            )
    load_keras_weights(torch_model, keras_model)
    x = rng.random((batch, size, size, 1), dtype=np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    diffs = {}
    for mode, training in (("inference", False), ("training", True)):
        ref = np.asarray(keras_model(x, training=training))
        torch_model.train(training)
        with torch.no_grad():
            out = torch_model(xt).permute(0, 2, 3, 1).numpy()
        diffs[mode] = float(np.abs(out - ref).max())
    return {"keras": keras_counts(keras_model), "torch": torch_counts(torch_model), "max_abs_diff": diffs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["unet", "resunet"], choices=["unet", "resunet"])
    p.add_argument("--base-filters", nargs="+", type=int, default=[16, 32])
    p.add_argument("--upsampling", nargs="+", default=list(UPSAMPLING_MODES), choices=UPSAMPLING_MODES)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ok = True
    print(
        "| model | base | upsampling | Keras trainable | PyTorch trainable | Keras count_params "
        "| PyTorch + BN stats | max abs diff (inference / training BN) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for base in args.base_filters:
            for up in args.upsampling:
                r = check_against_keras(model, base, upsampling=up)
                same = r["keras"] == r["torch"] and max(r["max_abs_diff"].values()) < 1e-3
                ok &= same
                print(
                    f"| {model} | {base} | {up} | {r['keras']['trainable']:,} | {r['torch']['trainable']:,} "
                    f"| {r['keras']['total']:,} | {r['torch']['total']:,} | "
                    f"{r['max_abs_diff']['inference']:.1e} / {r['max_abs_diff']['training']:.1e} "
                    f"{'' if same else 'MISMATCH'} |"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
