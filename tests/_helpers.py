"""Plain helpers shared by several test files (fixtures live in conftest.py).

Imported as ``from _helpers import ...``: pytest puts ``tests/`` (the folder of
``conftest.py``) on ``sys.path`` (rootdir-relative "prepend" import mode, no
``__init__.py`` in ``tests/`` or its subfolders, so test file names are unique).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

TEM_VALUES = [0, 50, 100, 150, 200]
TEM_NAMES = ["background", "blood_vessel", "myelinated_axon", "unmyelinated_axon", "schwann_cell"]


def disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    """Boolean [H, W] mask of the closed disc of radius ``r`` centred at (cy, cx)."""
    yy, xx = np.indices(shape)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def as_bhwk(a) -> np.ndarray:
    """[H, W] -> [1, H, W, 1] float32."""
    return np.asarray(a, dtype="float32")[None, ..., None]


def with_weight(y, weight) -> np.ndarray:
    """Append a weight channel [..., 1] to targets [..., K]; float32."""
    return np.concatenate([y, np.asarray(weight, "float32")[..., None]], axis=-1).astype("float32")


def save_model(path, class_values, class_names, test_images=()) -> Path:
    """An untrained base-4, depth-2 U-Net (seed 0) with its info layer, saved at ``path``."""
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    keras.utils.set_random_seed(0)
    info = ModelInfo(
        tuple(class_values),
        tuple(class_names),
        patch_size=64,
        size_divisor=4,
        test_images=tuple(tuple(map(str, t)) for t in test_images),
    )
    model = attach_info(build_model(ModelConfig(base_filters=4, depth=2), len(class_values)), info)
    model.save(path)
    return path


def tiny_train_config(tem_dir, out, **train):
    """RunConfig of a tiny TEM run: patch 64, base 4, depth 2, 2 epochs x 2 steps of batch 2."""
    from unet_tf.config import RunConfig, replace_config

    return replace_config(
        RunConfig(),
        data={
            "dataset": "tem",
            "data_dir": str(tem_dir),
            "patch_size": 64,
            "patches_per_image": 2,
            "val_fraction": 0.34,
        },
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "out": str(out), **train},
    )


def real_data(relative: str) -> Path:
    """``$UNET_TF_DATA/relative``; skips the calling test when it is not there."""
    root = os.environ.get("UNET_TF_DATA")
    path = Path(root) / relative if root else None
    if path is None or not path.exists():
        pytest.skip(f"UNET_TF_DATA/{relative} not available")
    return path


# === The tracking movie: four discs on known paths, disc C divides between frames 3 and 4 (tracking tests) ===

SIZE, RADIUS, N_FRAMES = 96, 5, 8


def _disc(image: np.ndarray, centre: tuple[float, float], value: int) -> None:
    yy, xx = np.ogrid[: image.shape[0], : image.shape[1]]
    image[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= RADIUS**2] = value


def movie_centres(t: int) -> dict[int, tuple[int, int]]:
    """{instance label: centre} of frame t: hand-written straight paths."""
    centres = {40: (10, 10 + 5 * t), 10: (85, 88 - 3 * t), 20: (85, 20)}
    if t < 4:
        centres[30] = (50, 20 + 4 * t)
    else:
        centres[31] = (44 - 4 * (t - 4), 36 + 2 * (t - 4))
        centres[32] = (56 + 4 * (t - 4), 36 + 2 * (t - 4))
    return centres


def movie(skip: dict[int, int] | None = None) -> list[np.ndarray]:
    """Eight (96, 96) uint16 instance frames; ``skip`` {frame: label} leaves an object out."""
    frames = []
    for t in range(N_FRAMES):
        frame = np.zeros((SIZE, SIZE), np.uint16)
        for label, centre in movie_centres(t).items():
            if (skip or {}).get(t) != label:
                _disc(frame, centre, label)
        frames.append(frame)
    return frames


TRACK_OF_LABEL = {10: 1, 20: 2, 30: 3, 40: 4, 31: 5, 32: 6}

LINEAGE = [[1, 0, 7, 0], [2, 0, 7, 0], [3, 0, 3, 0], [4, 0, 7, 0], [5, 4, 7, 3], [6, 4, 7, 3]]

# === Tiny model files with a given info (export and ONNX tests) ===

INFO = {
    "dataset": "folder",
    "data_dir": None,
    "label_mode": "values",
    "patch_size": 64,
    "size_divisor": 4,
    "normalize": {"pmin": 2.0, "pmax": 98.0, "clip": False},
    "test_images": [],
    "unet_tf_version": "0.1.0",
    "model": {"model": "unet", "base_filters": 4, "depth": 2},
}

CLASSES = {2: ([0, 255], ["background", "membrane"]), 3: ([0, 50, 100], ["background", "axon", "myelin"])}


def tiny_model_file(path, n_classes, test_images=()):
    """A base-4, depth-2 U-Net with its info layer, saved at ``path``; returns (path, info)."""
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models import file as model_file

    keras.utils.set_random_seed(n_classes)
    values, names = CLASSES[n_classes]
    info = {
        **INFO,
        "class_values": values,
        "class_names": names,
        "test_images": [list(map(str, t)) for t in test_images],
    }
    record = getattr(model_file.ModelInfo, "from_dict", None)  # a typed ModelInfo after issue 10
    model = model_file.attach_info(
        build_model(ModelConfig(base_filters=4, depth=2), n_classes), record(info) if record else info
    )
    model.save(path)
    return path, info
