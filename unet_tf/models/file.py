"""The model file contract: ``best.keras`` alone is enough to predict.

A trained network ends in an identity layer
(:class:`unet_tf.models.info_layer.InfoLayer`, registered with Keras as
``unet_tf>ModelInfo``) whose config holds a :class:`ModelInfo`:
class values and names, normalization, training patch size, the size divisor
of the architecture, the target kind, the dataset and its folder, the
training objects' typical size (minimum size, diameter, pixel size). ModelInfo is
a frozen, versioned dataclass built in one place (:meth:`ModelInfo.for_run`)
and read back with :func:`read_info`; files of older format versions load.

Keras is imported only by the functions that need it, so the dataclass is
usable where TensorFlow is not installed (ONNX models carry the same dict).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from unet_tf.config import MODEL_TARGETS, ModelConfig, NormalizeConfig, PredictConfig, from_dict, n_outputs, to_dict
from unet_tf.data.layouts import DatasetSpec
from unet_tf.errors import UserInputError

INFO_LAYER = "unet_tf_info"  # the name of models.info_layer.InfoLayer in every model
# 1: the untyped dict of unet_tf 0.1 (same keys, no "target"); 2: no "min_size"; 3: no "object_diameter",
# "pixel_size_um"; 4: no "foreground_threshold"
FORMAT_VERSION = 5


@dataclass(frozen=True)
class ModelInfo:
    """What prediction needs to know about a trained network.

    Attributes:
        class_values: label value written for each class id, class 0 first.
        class_names: a name per class.
        normalize: the percentile stretch the network was trained with.
        patch_size: training patch side in px.
        size_divisor: input sides must be multiples of this (``2**depth``).
        dataset: the dataset layout it was trained on (``folder`` for arrays).
        label_mode: how that layout's label files become class ids.
        target: ``semantic`` (class ids) or ``instances`` (background /
            interior / boundary, turned into objects after prediction).
        boundary_width: px of the boundary class of an instance target.
        ignore_value: label value of pixels that count nowhere, if any.
        min_size: smallest object in px that prediction reports by default,
            learned from the training objects
            (:func:`unet_tf.data.targets.min_object_size`); None where unknown
            (files of format 1 and 2, semantic models): then 0.
        object_diameter: the training objects' typical diameter in px (median
            equivalent diameter, :mod:`unet_tf.objects.scale`): prediction
            brings images to this scale; None where unknown (files of format
            1-3, no objects): images are used at their own scale.
        pixel_size_um: µm per px of the training images when their files say
            it (all the same), else None.
        foreground_threshold: an instance model's interior + boundary
            probability above which a pixel is object, calibrated on its
            validation images after training
            (:mod:`unet_tf.training.calibration`); None where not calibrated
            (files before format 5, too few validation objects): then 0.5.
        data_dir: the dataset folder, if any (predict.py's default input).
        test_images: held-out ``(image, label, ...)`` paths of the run.
        model: the architecture.
        unet_tf_version: the package version that wrote the file.
        format: the format version of this record.
    """

    class_values: tuple[int, ...]
    class_names: tuple[str, ...]
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    patch_size: int = 256
    size_divisor: int = 16
    dataset: str = "folder"
    label_mode: str = "values"
    target: str = "semantic"
    boundary_width: int = 2
    ignore_value: int | None = None
    min_size: int | None = None
    object_diameter: float | None = None
    pixel_size_um: float | None = None
    foreground_threshold: float | None = None
    data_dir: str | None = None
    test_images: tuple[tuple[str, ...], ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    unet_tf_version: str = ""
    format: int = FORMAT_VERSION

    def __post_init__(self):
        if len(self.class_values) != len(self.class_names) or len(self.class_values) < 2:
            raise ValueError(
                f"class_values {self.class_values} and class_names {self.class_names}: need the same number, at least 2"
            )
        if self.target not in MODEL_TARGETS:
            raise ValueError(f"target must be one of {MODEL_TARGETS}, got {self.target!r}")
        if self.min_size is not None and self.min_size < 0:
            raise ValueError(f"min_size must be None or >= 0, got {self.min_size!r}")
        for name in ("object_diameter", "pixel_size_um"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be None or > 0, got {value!r}")
        if self.foreground_threshold is not None and not 0 < self.foreground_threshold < 1:
            raise ValueError(f"foreground_threshold must be None or in (0, 1), got {self.foreground_threshold!r}")

    @property
    def n_classes(self) -> int:
        return len(self.class_values)

    @property
    def n_outputs(self) -> int:
        """The model's output channels (:func:`unet_tf.config.n_outputs`)."""
        return n_outputs(self.n_classes)

    @property
    def spec(self):
        """The :class:`unet_tf.data.layouts.DatasetSpec` that reads label files for this model."""
        return DatasetSpec(
            self.dataset,
            self.class_values,
            self.class_names,
            self.label_mode,
            self.target,
            self.boundary_width,
            self.ignore_value,
        )

    def to_dict(self) -> dict:
        """Plain JSON-able dict (the Keras layer config, ONNX metadata, rdf.yaml)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelInfo":
        """Read a dict of any format version up to :data:`FORMAT_VERSION`."""
        values = dict(values)
        version = int(values.get("format", 1))
        if version > FORMAT_VERSION:
            raise UserInputError(
                f"model info format {version} is newer than this unet_tf understands ({FORMAT_VERSION}); update unet_tf"
            )
        values["format"] = FORMAT_VERSION
        values["test_images"] = [tuple(row) for row in values.get("test_images") or ()]
        return from_dict(cls, values, "model info")


def tiling_options(config: PredictConfig, info: ModelInfo) -> dict[str, Any]:
    """The keyword arguments of ``inference.predict_bands`` / ``predict_rows`` for ``config`` and a model:
    tile, overlap, batch_size and tta from ``config``, size_divisor from ``info``."""
    return {
        "tile": config.tile,
        "overlap": config.overlap,
        "batch_size": config.batch_size,
        "size_divisor": info.size_divisor,
        "tta": config.tta,
    }


def min_size_for(config: PredictConfig, info: ModelInfo) -> tuple[int, str]:
    """(smallest object in px, where it came from): ``config.min_size`` if set, else the model's own, else 0."""
    if config.min_size is not None:
        return config.min_size, "set"
    if info.min_size is not None:
        return info.min_size, "the model's, from its training objects"
    return 0, "none set; the model holds no value"


def foreground_threshold_for(config: PredictConfig, info: ModelInfo) -> tuple[float, str]:
    """(an instance model's foreground threshold, where it came from): ``config.foreground_threshold`` if set,
    else the model's calibrated one, else 0.5."""
    if config.foreground_threshold is not None:
        return config.foreground_threshold, "set"
    if info.foreground_threshold is not None:
        return info.foreground_threshold, "the model's, calibrated on its validation images"
    return 0.5, "none set; the model holds no calibrated value"


def register_keras_objects() -> None:
    """Register unet_tf's Keras objects (info layer, losses, metrics, custom layers).

    Then ``keras.models.load_model("best.keras")`` works without unet_tf's
    loader. Called by every model-facing function; cheap after the first call.
    """
    import unet_tf.models.build  # noqa: F401  (it imports every module that registers a Keras object)


def attach_info(model: Any, info: ModelInfo):
    """``model`` with its output passed through the info layer holding ``info``."""
    import keras

    from unet_tf.models.info_layer import InfoLayer

    output = InfoLayer(info.to_dict())(model.output)
    return keras.Model(model.input, output, name=model.name)


def read_info(model: Any) -> ModelInfo:
    """The :class:`ModelInfo` of a unet_tf Keras model (UserInputError for another model)."""
    try:
        layer = model.get_layer(INFO_LAYER)
    except ValueError:
        raise UserInputError(f"model '{model.name}' is not a unet_tf model (no {INFO_LAYER} layer)") from None
    return ModelInfo.from_dict(layer.info)


def bare_network(model: Any):
    """The network without its info layer (plain Keras layers only, for export)."""
    import keras

    from unet_tf.models.fused_norm import plain_batch_norm

    network = keras.Model(model.input, model.get_layer(INFO_LAYER).input, name=model.name)
    return plain_batch_norm(network)


def load_model_and_info(path: str | Path, compile: bool = False, precision: str = "float32") -> tuple[Any, ModelInfo]:
    """Load a ``.keras`` file written by unet_tf, or a bundled model by name; returns (keras.Model, ModelInfo).

    ``path`` goes through :func:`unet_tf.models.bundled.resolve_weights`: an
    existing file wins, else a bundled model's name (``nuclei``). Neither, a
    file that is not a Keras archive, or a Keras model that unet_tf did not
    write is a UserInputError naming the file (or listing the bundled names).
    Without ``compile`` the model computes in ``precision`` (``float32``,
    ``mixed_bfloat16`` or ``auto``: :func:`unet_tf.training.precision.resolve_predict_precision`),
    whatever precision it was trained in.
    """
    from unet_tf.models.bundled import resolve_weights

    path = resolve_weights(path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise UserInputError(f"{path}: not a .keras model file (train one with train.py)")
    register_keras_objects()
    import keras

    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as exc:  # Keras raises many types for a foreign or damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{path}: cannot load this model ({first[:200]})") from None
    try:
        info = read_info(model)
    except UserInputError:
        raise UserInputError(f"{path}: a Keras model, but not one written by unet_tf (no {INFO_LAYER} layer)") from None
    if not compile:  # a model trained in mixed bfloat16 predicts in float32 (same weights) unless asked
        import tensorflow as tf

        from unet_tf.training.precision import prediction_model, resolve_predict_precision

        gpus = len(tf.config.list_physical_devices("GPU")) if precision == "auto" else 0
        model = prediction_model(model, resolve_predict_precision(precision, gpus=gpus)[0])
    return model, info


def replace_info(path: str | Path, **changes: Any) -> ModelInfo:
    """Rewrite the :class:`ModelInfo` of the model file ``path`` with ``changes`` (weights, precision and
    optimizer state kept); the file is replaced whole or not at all. Returns the new info."""
    from unet_tf.io.writers import atomic_path

    model, info = load_model_and_info(path, compile=True)
    info = replace(info, **changes)
    model.get_layer(INFO_LAYER).info = info.to_dict()
    with atomic_path(path) as tmp:
        model.save(tmp)
    return info


def load_model(path: str | Path, compile: bool = False, precision: str = "float32"):
    """Load a ``.keras`` file written by unet_tf (``unet_tf.read_info(model)`` gives its info).

    Args:
        path: str or Path. A ``best.keras`` / ``last.keras`` of a run folder,
            or the name of a model bundled with the package
            (:func:`unet_tf.models.bundled.bundled_models`), e.g. ``"nuclei"``.
        compile: bool. Also restore the loss, metrics and optimizer (needed
            only to continue training). Default False.
        precision: str. ``float32`` (default), ``mixed_bfloat16`` (bfloat16
            compute, float32 weights and probabilities: faster on CPUs with
            avx512_bf16) or ``auto`` (:func:`unet_tf.training.precision.resolve_predict_precision`).
            Ignored with ``compile``.

    Example:
        >>> model = unet_tf.load_model("runs/tem/best.keras")  # doctest: +SKIP
        >>> unet_tf.read_info(model).class_names  # doctest: +SKIP
        ('background', 'blood_vessel', ...)
    """
    return load_model_and_info(path, compile, precision)[0]
