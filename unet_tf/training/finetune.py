"""Fine-tuning: start a run from a trained model's weights (``train.init_from``).

Three pieces, each usable alone and called by :mod:`unet_tf.training.run`:

* :func:`parent_model_config` reads the parent's architecture, so a
  fine-tuning run builds the same network without repeating its flags;
* :func:`init_from` copies the parent's weights, layer by layer by name, into
  a freshly built and compiled model (the optimizer state stays fresh: a new
  run). The head (``head_conv``, the final 1x1 convolution) keeps its fresh
  initialisation when the class count differs; any other difference is a
  :class:`~unet_tf.errors.UserInputError` naming the file and the layer;
* :class:`FreezeEncoder` keeps the encoder fixed for the first N epochs.

The encoder is the contracting path and the bottleneck: the layers named
``enc<i>_*`` (both architectures), ``bottleneck*`` (U-Net) and ``bridge*``
(Deep ResUNet), see :func:`is_encoder_layer`. The decoder (``dec<i>_*``) and the
head are trained throughout.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Callable

import keras

from unet_tf.config import ModelConfig, RunConfig, TrainConfig
from unet_tf.data.layouts import DatasetSpec
from unet_tf.errors import UserInputError
from unet_tf.models.bundled import resolve_weights
from unet_tf.models.file import INFO_LAYER, ModelInfo, load_model_and_info, read_info
from unet_tf.training.distribute import is_default

Log = Callable[[str], None]

HEAD_LAYER = "head_conv"
ONE_DEVICE_ONLY = (
    "`train.freeze_encoder_epochs`: works on one device only, not under a tf.distribute strategy "
    "(use `train.strategy` none)"
)
_ENCODER = re.compile(r"^(enc\d+|bottleneck|bridge)(_|$)")


def parent_file(name_or_path: str | Path) -> Path:
    """The parent model file of ``train.init_from``: an existing file, else a bundled model's name (``nuclei``).

    Neither is a :class:`UserInputError` naming `train.init_from` and listing
    the bundled names (:func:`unet_tf.models.bundled.resolve_weights`).
    """
    return resolve_weights(name_or_path, parameter="train.init_from")


def parent_model_config(path: str | Path) -> tuple[ModelConfig, ModelInfo]:
    """The architecture and the info of a trained model file.

    Args:
        path: str or Path. A ``.keras`` file written by unet_tf (``best.keras``),
            or a bundled model's name (:func:`parent_file`).

    Returns:
        ``(ModelConfig, ModelInfo)``: the parent's architecture (model,
        base filters, depth, upsampling, dropout, attention) and its whole info.

    A missing file, a file that is not a Keras model, or a model unet_tf did
    not write is a :class:`UserInputError` naming the file.
    """
    file = parent_file(path).resolve()
    return _parent_info(str(file), file.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parent_info(path: str, mtime_ns: int) -> tuple[ModelConfig, ModelInfo]:
    """The parent's architecture and info, read once per file version (a run asks for them twice: the
    architecture, then the object scale; the Keras model itself is not kept)."""
    _, info = load_model_and_info(path)
    return info.model, info


def with_parent_architecture(cfg: RunConfig, path: str | Path, log: Log = print) -> RunConfig:
    """``cfg`` with its ``model`` section replaced by the parent's architecture (said once if it changes)."""
    model_cfg, _ = parent_model_config(path)
    if model_cfg != cfg.model:
        log(f"architecture from {path}: {describe(model_cfg)} (the model settings of this run are ignored)")
    return dataclasses.replace(cfg, model=model_cfg)


def with_parent_scale(cfg: RunConfig, spec: DatasetSpec, log: Log = print) -> RunConfig:
    """``cfg`` with ``data.object_diameter`` set to the parent's object diameter when fine-tuning an instance
    model on instance labels and the run sets none: the new labels are brought to the scale the parent's
    weights learned (a bundled model trained at 18 px nuclei keeps seeing 18 px nuclei), and the child model
    records that scale for prediction. ``cfg`` unchanged otherwise."""
    parent = cfg.train.init_from
    if not parent or cfg.data.object_diameter is not None or spec.target != "instances":
        return cfg
    _, info = parent_model_config(parent)
    if info.target != "instances" or not info.object_diameter:
        return cfg
    log(f"object scale of the parent {parent}: training images resized to its {info.object_diameter:g} px objects")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, object_diameter=info.object_diameter))


def check_settings(cfg: TrainConfig, one_device: bool) -> None:
    """UserInputError, before anything is written, for fine-tuning settings that cannot work.

    Args:
        cfg: TrainConfig. Reads ``init_from`` and ``freeze_encoder_epochs``.
        one_device: bool. False under a tf.distribute strategy (multi-GPU,
            multi-worker), where :class:`FreezeEncoder` cannot switch.
    """
    epochs = getattr(cfg, "freeze_encoder_epochs", 0)
    if epochs < 0:
        raise UserInputError(f"`train.freeze_encoder_epochs` {epochs}: must be at least 0")
    if epochs and not getattr(cfg, "init_from", None):
        raise UserInputError(
            "`train.freeze_encoder_epochs`: needs `train.init_from` (a fresh encoder has nothing worth keeping)"
        )
    if epochs and not one_device:
        raise UserInputError(ONE_DEVICE_ONLY)


def finetune_config(cfg: RunConfig, one_device: bool, log: Log = print) -> RunConfig:
    """The first phase of a run: :func:`check_settings`, then the parent's architecture when ``init_from`` is set.

    Args:
        cfg: RunConfig. The run's settings (``cfg.train.init_from``,
            ``cfg.train.freeze_encoder_epochs``).
        one_device: bool. False under a tf.distribute strategy.
        log: callable taking one line of text. Default ``print``.
    """
    check_settings(cfg.train, one_device)
    parent = getattr(cfg.train, "init_from", None)
    return with_parent_architecture(cfg, parent, log) if parent else cfg


def describe(cfg: ModelConfig) -> str:
    """One line naming an architecture, e.g. ``unet base 8 depth 4``."""
    depth = "default depth" if cfg.depth is None else f"depth {cfg.depth}"
    extras = [f"{cfg.upsampling} upsampling"] + (["attention"] if cfg.attention else [])
    return f"{cfg.model} base {cfg.base_filters} {depth}, {', '.join(extras)}"


def is_encoder_layer(name: str) -> bool:
    """Whether layer ``name`` belongs to the contracting path or the bottleneck.

    Example:
        >>> [is_encoder_layer(n) for n in ("enc1_conv1", "bottleneck_bn2", "bridge_add", "dec1_conv1", "head_conv")]
        [True, True, True, False, False]
    """
    return bool(_ENCODER.match(name))


# === Copying weights ===


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _weighted_layers(model: Any) -> dict[str, Any]:
    """Layers holding weights, by name, in model order (the info layer holds none)."""
    return {layer.name: layer for layer in model.layers if layer.weights and layer.name != INFO_LAYER}


def _outputs(model: Any) -> int:
    return int(model.output.shape[-1])


def _classes_here(model: Any) -> str:
    """This model's class count for the log; a bare network (no info layer) tells only its output channels."""
    try:
        return str(read_info(model).n_classes)
    except UserInputError:
        return f"{_outputs(model)} output channel(s)"


def _mismatch(parent: Any, here: Any) -> str | None:
    """Why layer ``parent`` cannot be copied into layer ``here`` (None when it can)."""
    if type(parent) is not type(here):
        return f"is a {type(parent).__name__} in the parent, a {type(here).__name__} here"
    if len(parent.weights) != len(here.weights):
        return f"has {len(parent.weights)} weights in the parent, {len(here.weights)} here"
    for p, h in zip(parent.weights, here.weights):
        if tuple(p.shape) != tuple(h.shape):
            return f"has {h.name} {_shape(p.shape)} in the parent, {_shape(h.shape)} here"
    return None


def _check_compatible(parent: Any, model: Any, path: Path) -> None:
    """UserInputError naming ``path`` and the first layer (or the input) that differs, head excepted."""
    where = f"{path}: incompatible architecture"
    c_parent, c_here = int(parent.input.shape[-1]), int(model.input.shape[-1])
    if c_parent != c_here:
        raise UserInputError(f"{where}: the parent takes {c_parent} input channel(s), this model {c_here}")
    theirs, ours = _weighted_layers(parent), _weighted_layers(model)
    for name, layer in ours.items():
        if name not in theirs:
            raise UserInputError(f"{where}: layer {name} is not in the parent")
        why = None if name == HEAD_LAYER else _mismatch(theirs[name], layer)
        if why:
            raise UserInputError(f"{where}: layer {name} {why}")
    extra = [name for name in theirs if name not in ours]
    if extra:
        raise UserInputError(f"{where}: layer {extra[0]} of the parent is not in this model")


def init_from(model: Any, parent_path: str | Path, log: Log = print) -> dict:
    """Copy a trained model's weights into ``model``, layer by layer by name.

    Args:
        model: keras.Model. The freshly built (and compiled) network of this
            run, with or without its info layer.
        parent_path: str or Path. The parent ``.keras`` file, or a bundled
            model's name (:func:`parent_file`).
        log: callable taking one line of text. Default ``print``.

    Every weight is copied, BatchNorm moving statistics included; the
    optimizer is not touched (its state stays fresh). When the class counts
    differ, the head (``head_conv``) keeps its fresh initialisation and this
    is said once. Any other missing layer, shape mismatch or a different input
    channel count is a :class:`UserInputError` naming the file and the first
    mismatching layer; then nothing has been copied.

    Returns:
        dict for ``config.json``: ``parent`` (resolved path), ``parent_classes``
        (names), ``copied_layers`` (count), ``head_replaced`` (bool).
    """
    path = parent_file(parent_path)
    parent, info = load_model_and_info(path)
    _check_compatible(parent, model, path)
    theirs = _weighted_layers(parent)
    other_head = info.n_outputs != _outputs(model)  # another class count (ModelInfo.n_outputs: 2 classes, 1 channel)
    replace_head = other_head or _mismatch(theirs[HEAD_LAYER], model.get_layer(HEAD_LAYER)) is not None
    copied = 0
    for name, layer in _weighted_layers(model).items():
        if name == HEAD_LAYER and replace_head:
            continue
        layer.set_weights(theirs[name].get_weights())
        copied += 1
    if replace_head:
        here = _classes_here(model)
        log(f"replaced the head: {info.n_classes} classes -> {here} (initialised fresh; the rest from {path})")
    else:
        log(f"initialised all {copied} weighted layers from {path}")
    return {
        "parent": str(path.resolve()),
        "parent_classes": list(info.class_names),
        "copied_layers": copied,
        "head_replaced": replace_head,
    }


# === Freezing the encoder ===


class FreezeEncoder(keras.callbacks.Callback):
    """Train only the decoder and the head for the first ``epochs`` epochs, then everything.

    Frozen layers (see :func:`is_encoder_layer`) get ``trainable = False``:
    their weights receive no updates and their BatchNorm layers run in
    inference mode (moving statistics fixed), as in Keras' transfer-learning
    guide. The compiled train function captured the trainable variables when
    it was traced, so it is rebuilt (``make_train_function(force=True)``) at
    each switch; the optimizer is built on all variables before the first
    step, so unfreezing needs no new optimizer. Works with ``model.fit`` (one
    device); under a tf.distribute strategy it is a UserInputError (the
    distributed loop traces its step once). The switch is decided at each
    epoch start, so a resumed run (``BackupAndRestore``) freezes or not by its
    epoch.

    Args:
        epochs: int. Epochs with the encoder frozen (0: never frozen).
    """

    def __init__(self, epochs: int):
        super().__init__()
        if epochs < 0:
            raise UserInputError(f"`train.freeze_encoder_epochs` {epochs}: must be at least 0")
        self.epochs = epochs
        self.frozen = False

    def _set(self, frozen: bool) -> None:
        layers = [layer for layer in self.model.layers if is_encoder_layer(layer.name)]
        if not layers:
            raise UserInputError(
                f"`train.freeze_encoder_epochs`: model '{self.model.name}' has no encoder layers "
                "(enc*, bottleneck*, bridge*)"
            )
        for layer in layers:
            layer.trainable = not frozen
        self.frozen = frozen
        self.model.make_train_function(force=True)

    def on_train_begin(self, logs=None):
        if self.epochs and not is_default(self.model.distribute_strategy):
            # unet_tf.training.fit.fit_distributed traces its step once: a switch would not take effect
            raise UserInputError(ONE_DEVICE_ONLY)
        optimizer = self.model.optimizer
        if self.epochs and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # all variables: unfreezing later needs their slots

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self.epochs
        if frozen != self.frozen:
            self._set(frozen)

    def on_train_end(self, logs=None):
        if self.frozen:
            self._set(False)


__all__ = [
    "parent_file",
    "parent_model_config",
    "with_parent_architecture",
    "check_settings",
    "finetune_config",
    "init_from",
    "FreezeEncoder",
    "is_encoder_layer",
    "describe",
    "HEAD_LAYER",
]
