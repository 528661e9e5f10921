"""Settings as frozen dataclasses: saved with every run, read back by predict.

Every field has a plain default, and defaults live only here: the command
lines, settings files (``config_file``) and notebooks fill them by name (see
:func:`from_dict`, :func:`load_config`), so an unknown key is an error, not a
silently ignored typo. The name tuples below are the choices a setting offers
(the command lines offer the same), and this is their only home; this module
imports nothing heavy, so a command line's help stays instant.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unet_tf.errors import UserInputError

DATASET_NAMES = ("tem", "isbi2012", "folder", "ctc", "dsb2018")
MODEL_NAMES = ("unet", "resunet")
DEFAULT_DEPTH = {"unet": 4, "resunet": 3}  # 2x downsamplings of each model when ModelConfig.depth is None
UPSAMPLING_NAMES = ("nearest", "bilinear", "transpose")
STRATEGY_NAMES = ("auto", "none", "mirrored", "multiworker")
LOSS_NAMES = (
    "auto",
    "bce",
    "bce+tversky",
    "bce+dice",
    "tversky",
    "dice",
    "focal_tversky",
    "ce",
    "ce+tversky",
    "ce+dice",
)
BUDGET_NAMES = ("steps", "epochs")
LR_SCHEDULE_NAMES = ("cosine", "constant")
PRECISION_NAMES = ("auto", "float32", "mixed_bfloat16")
TARGET_NAMES = ("auto", "semantic", "instances")
MODEL_TARGETS = TARGET_NAMES[1:]  # what a trained model learned ("auto" is resolved before training)
EXPORT_FORMAT_NAMES = ("onnx", "savedmodel", "bioimageio")


@dataclass(frozen=True)
class NormalizeConfig:
    """Percentile contrast stretch applied once per whole image."""

    pmin: float = 2.0
    pmax: float = 98.0
    clip: bool = False


@dataclass(frozen=True)
class AugmentConfig:
    """On-graph augmentation of training patches; ``enabled=False`` turns all off."""

    enabled: bool = True
    # Elastic deformation: random displacements on a coarse grid x grid control
    # grid (in pixels, standard deviation alpha), upsampled bicubically to a
    # dense field and smoothed; one field for image and mask.
    elastic: bool = True
    elastic_grid: int = 3
    elastic_alpha: float = 10.0
    elastic_sigma: float = 3.0
    elastic_prob: float = 0.7
    # Dihedral group: random rot90 and flips.
    flip_rot90: bool = True
    # Small affine: rotation in degrees, isotropic scale, translation in pixels.
    affine_prob: float = 0.5
    rotation_deg: float = 15.0
    scale_min: float = 0.9
    scale_max: float = 1.1
    translate_px: float = 8.0
    # Intensity jitter on the normalized image.
    intensity_prob: float = 0.8
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    noise_std: float = 0.03


@dataclass(frozen=True)
class DataConfig:
    """Which images, how they become training and validation patches."""

    dataset: str = "tem"
    data_dir: str | None = None
    class_values: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    train_size: int | None = None
    holdout: int = 0  # the last N labelled training images (by name) form the test set
    val_fraction: float = 0.2
    patch_size: int | None = None  # None: planned from the data (unet_tf.training.plan; 256 at the measured scales)
    patches_per_image: int = 16
    oversample_rare: float = 0.3
    # give bright-background (brightfield, stained) and dark-background (fluorescence) training images patch
    # shares in proportion to the square root of their counts, not each image equally: a mixed set's
    # minority appearance is seen more often (unet_tf.data.sampling.balanced_shares; no gain measured on DSB2018)
    balance_background: bool = False
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # What the network learns: "semantic" class ids, or "instances" (background / interior /
    # boundary of each object, split into objects after prediction); "auto": instances for the
    # ctc and dsb2018 layouts and for folder masks read with instance_masks, semantic otherwise.
    target: str = "auto"
    instance_masks: bool = False  # folder layout: each mask holds one id per object
    boundary_width: int | None = None  # px of an object's edge labelled boundary; None: planned (2 px measured)
    border_weight: float = 10.0  # w0 of the U-Net separation-border weight (0 = off)
    border_sigma: float | None = None  # sigma of that weight, px; None: planned (5 px measured)
    ignore_value: int | None = None  # folder layout: label value of pixels that count nowhere
    # instance targets: resize each training image so its objects' median diameter is this (px), so a set
    # of mixed magnifications teaches one scale (unet_tf.data.rescale); None: images keep their scale
    object_diameter: float | None = None

    def __post_init__(self):
        d = self.object_diameter
        if d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Real) or not 2 <= d < math.inf):
            raise UserInputError(f"`data.object_diameter` {d!r}: must be a number of px, at least 2")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; ``n_classes`` comes from the dataset."""

    model: str = "unet"
    base_filters: int = 16
    depth: int | None = None  # 2x downsamplings; None: DEFAULT_DEPTH of the model (4 for unet, 3 for resunet)
    upsampling: str = "nearest"
    dropout: float = 0.0
    attention: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, callbacks and the run folder."""

    epochs: int = 20
    steps_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 2e-3  # the peak of the cosine schedule (BENCHMARKS.md, "Round 3": 1e-3 reached 0.879, 2e-3 0.916)
    lr_schedule: str = "cosine"  # cosine: 5 % linear warm-up, then cosine decay; constant: plateau cuts only
    loss: str = "auto"
    # auto: mixed_bfloat16 on a CPU with avx512_bf16 or AMX (and no GPU), else float32 (unet_tf.training.precision)
    precision: str = "auto"
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    early_stopping_patience: int = 10
    reduce_lr_patience: int = 4
    seed: int = 0
    out: str | None = None
    resume: bool = False
    tensorboard: bool = False
    max_minutes: float | None = None
    # tf.distribute strategy: auto, none, mirrored, multiworker (see unet_tf.training.distribute);
    # batch_size is per replica, lr is used as given
    strategy: str = "auto"
    # Fine-tuning: start from a trained model's weights (its architecture; the head is replaced when the
    # class count differs), optionally with the encoder frozen for the first epochs.
    init_from: str | None = None
    freeze_encoder_epochs: int = 0

    def __post_init__(self):
        if self.precision not in PRECISION_NAMES:
            raise UserInputError(f"precision {self.precision!r}: choose one of {', '.join(PRECISION_NAMES)}")
        if self.lr_schedule not in LR_SCHEDULE_NAMES:
            raise UserInputError(f"lr schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULE_NAMES)}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; written to ``config.json``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class PredictConfig:
    """How ``predict_image`` / ``predict.py`` tile, blend, threshold and write."""

    tile: int = 512
    overlap: int = 64
    batch_size: int = 4
    tta: bool = False
    threshold: float = 0.5
    save_probabilities: bool = False
    overlay: bool = True
    pixel_size: float | None = None  # micrometres per pixel, for the µm columns of objects.csv
    min_size: int | None = None  # smallest object in px; None: the model's own (ModelInfo.min_size), else 0
    # instance models: interior + boundary probability above which a pixel is object; None: the model's
    # calibrated value (ModelInfo.foreground_threshold, unet_tf.training.calibration), else 0.5
    foreground_threshold: float | None = None
    split_touching: bool = False  # semantic models: split touching objects of a class (distance watershed)
    stream: bool = False  # predict in bands of rows (automatic when predicting whole needs over half the free memory)
    shard: tuple[int, int] = (0, 1)  # (index, count): this run is shard index of count; names the tables
    diameter: float | None = None  # the objects' diameter in px of the images: rescaled to the model's (Cellpose)
    # auto: mixed_bfloat16 only on a CPU kind where it was measured >= 1.3x faster with masks agreeing on
    # >= 99.9 % of pixels, else float32 (unet_tf.training.precision.resolve_predict_precision). Applied where the
    # model is loaded (predict.py; load_model(precision=...)); ONNX models run as exported
    precision: str = "auto"
    # blockwise prediction of huge images on Dask (unet_tf.prediction.blockwise)
    scheduler: str | None = None  # local:N or tcp://HOST:PORT: predict blockwise on that Dask cluster
    block_size: int | None = None  # px per block side (None: 4096); at least `tile`, a multiple of the size divisor
    resume: bool = False  # continue a blockwise output folder, skipping blocks already written

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise UserInputError(f"threshold {self.threshold}: must be between 0 and 1")
        fg = self.foreground_threshold
        if fg is not None and (isinstance(fg, bool) or not isinstance(fg, numbers.Real) or not 0 < fg < 1):
            raise UserInputError(f"`predict.foreground_threshold` {fg!r}: must be between 0 and 1")
        if self.pixel_size is not None and self.pixel_size <= 0:
            raise UserInputError(f"pixel size {self.pixel_size}: must be positive")
        if self.min_size is not None and self.min_size < 0:
            raise UserInputError(f"min size {self.min_size}: must be at least 0")
        diameter = self.diameter
        if diameter is not None and (
            isinstance(diameter, bool) or not isinstance(diameter, numbers.Real) or not 0 < diameter < math.inf
        ):
            raise UserInputError(f"`predict.diameter` {diameter!r}: must be a positive number of px")
        if self.precision not in PRECISION_NAMES:
            raise UserInputError(f"`predict.precision` {self.precision!r}: choose one of {', '.join(PRECISION_NAMES)}")


@dataclass(frozen=True)
class TrackConfig:
    """Linking objects over frames: ``max_distance`` px per frame, gaps of up to ``max_gap`` frames, divisions."""

    max_distance: float = 30.0
    max_gap: int = 2
    divisions: bool = True
    frame_interval: float | None = None  # minutes between frames: speeds per minute
    gt: str | None = None  # a CTC ground-truth folder (NN_GT); default: beside the sequence
    channel: int | None = None  # hyperstacks with a C axis: the channel to track (0-based)
    z: int | None = None  # hyperstacks with a Z axis: the plane to track (0-based)

    def __post_init__(self):
        for name in ("channel", "z"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserInputError(f"{name}={value}: must be at least 0 (0-based index)")


@dataclass(frozen=True)
class AblationConfig:
    """The training-set-size grid: sizes x augmentation x models x repeats (:func:`unet_tf.ablation.run_ablation`).

    ``train_sizes``: labelled images per cell (training + validation); ``augment``: the
    augmentation settings compared; ``models``: the architectures (None: the run's own
    ``model.model``); ``repeats``: seeds ``train.seed + r``; ``budget``: one of
    :data:`BUDGET_NAMES` (``steps``: the same optimizer steps per cell; ``epochs``:
    ``train.epochs`` passes over each cell's patches); ``budget_steps``: total steps per
    cell under ``steps`` (None: ``train.epochs x train.steps_per_epoch``, or without steps per
    epoch ``train.epochs`` passes over the largest size).
    """

    train_sizes: tuple[int, ...] = ()
    augment: tuple[bool, ...] = (True, False)
    models: tuple[str, ...] | None = None  # None: the run's own model
    repeats: int = 1
    budget: str = "steps"
    budget_steps: int | None = None


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples become lists) for JSON."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, values: dict, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys are an error."""
    if not isinstance(values, dict):
        raise UserInputError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


# === Files and merging ===

_SECTIONS = {
    "data": set(DataConfig.__dataclass_fields__),
    "model": set(ModelConfig.__dataclass_fields__),
    "train": set(TrainConfig.__dataclass_fields__),
}


def nest_settings(flat: dict, where: str) -> dict:
    """Flat or sectioned settings -> ``{"data": {...}, "model": {...}, "train": {...}}``.

    Flat keys are placed in the section that owns them (``epochs`` -> train);
    ``pmin``/``pmax``/``clip`` go to ``data.normalize``, ``augment: false`` and
    ``no_augment: true`` turn augmentation off. An unknown key is an error
    naming ``where``.
    """
    nested: dict = {"data": {}, "model": {}, "train": {}}
    for key, value in flat.items():
        key = key.replace("-", "_")
        if key in nested and isinstance(value, dict):
            nested[key].update(value)
        elif key in ("pmin", "pmax", "clip"):
            nested["data"].setdefault("normalize", {})[key] = value
        elif key == "augment" and isinstance(value, bool):
            nested["data"].setdefault("augment", {})["enabled"] = value
        elif key == "no_augment":
            nested["data"].setdefault("augment", {})["enabled"] = not value
        else:
            section = next((s for s, fields in _SECTIONS.items() if key in fields), None)
            if section is None:
                raise UserInputError(f"{where}: unknown setting '{key}'")
            nested[section][key] = value
    return nested


def merge_settings(base: dict, over: dict) -> dict:
    """``base`` updated by ``over``, recursively for nested mappings."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_settings(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def read_settings_file(path: str | Path) -> dict:
    """A YAML or JSON mapping of settings; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    is_json = path.suffix.lower() == ".json"
    try:
        if is_json:
            values = json.loads(path.read_text())
        else:
            import yaml

            values = yaml.safe_load(path.read_text())
    except Exception as exc:  # json/yaml parse errors
        kind = "JSON" if is_json else "YAML"
        raise UserInputError(f"{path}: not valid {kind} ({str(exc).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserInputError(f"{path}: expected a mapping of settings at the top level")
    return values


def config_from_settings(*layers: dict) -> RunConfig:
    """A :class:`RunConfig` from nested settings dicts, later layers overriding earlier ones."""
    merged: dict = {}
    for layer in layers:
        merged = merge_settings(merged, layer)
    return from_dict(RunConfig, {k: v for k, v in merged.items() if v}, "config")


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """The :class:`RunConfig` of a YAML/JSON settings file (train.py's ``config_file``).

    Args:
        path: str or Path or None. A YAML or JSON file with flat keys
            (``epochs: 5``) or sections (``data:``, ``model:``, ``train:``).
            None: the defaults.
        **overrides: flat settings applied on top, as the command-line flags
            are (``load_config("s.yaml", epochs=2, dataset="isbi2012")``).

    Example:
        >>> cfg = load_config(None, epochs=2, base_filters=8)
        >>> cfg.train.epochs, cfg.model.base_filters, cfg.data.dataset
        (2, 8, 'tem')
    """
    file_values = nest_settings(read_settings_file(path), str(path)) if path else {}
    return config_from_settings(file_values, nest_settings(overrides, "overrides"))


def replace_config(cfg: RunConfig, **sections: dict) -> RunConfig:
    """``cfg`` with sections replaced field-wise: ``replace_config(cfg, train={"epochs": 2})``."""
    parts = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return dataclasses.replace(cfg, **parts)


def n_outputs(n_classes: int) -> int:
    """Output channels of a model of ``n_classes`` classes: 1 (a sigmoid, P(class 1)) for two, else one
    softmax channel per class. The one place this rule lives; ``ModelInfo.n_outputs`` reads it."""
    return 1 if n_classes == 2 else n_classes


def steps_per_pass(n_images: int, patches_per_image: int, batch_size: int) -> int:
    """Optimizer steps of one pass over ``n_images x patches_per_image`` patches (the last batch may be short)."""
    return max(1, math.ceil(n_images * patches_per_image / batch_size))
