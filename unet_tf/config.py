"""Settings as frozen dataclasses: saved with every run, read back by predict.

Every field has a plain default; the command lines and ``--config`` files fill
them by name (see :func:`from_dict`), so an unknown key is an error, not a
silently ignored typo.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import UserInputError


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
    patch_size: int = 256
    patches_per_image: int = 16
    oversample_rare: float = 0.3
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; ``n_classes`` comes from the dataset."""

    model: str = "unet"
    base_filters: int = 16
    depth: int | None = None  # 2x downsamplings; None: 4 for unet, 3 for resunet
    upsampling: str = "nearest"
    dropout: float = 0.0
    attention: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, callbacks and the run folder."""

    epochs: int = 20
    steps_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    loss: str = "auto"
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    early_stopping_patience: int = 10
    reduce_lr_patience: int = 4
    seed: int = 0
    out: str | None = None
    resume: bool = False
    tensorboard: bool = False
    max_minutes: float | None = None
    # tf.distribute strategy: auto, none, mirrored, multiworker (see unet_tf.distribute);
    # batch_size is per replica, lr is used as given
    strategy: str = "auto"


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; written to ``config.json``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


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
        raise UserInputError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
