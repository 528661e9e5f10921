"""Plain helpers shared by several test files (fixtures live in conftest.py).

Imported as ``from _helpers import ...``: pytest puts ``tests/`` on
``sys.path`` (rootdir-relative "prepend" import mode, no ``tests/__init__.py``),
the same way ``from test_predict_cli import ...`` already worked.
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
