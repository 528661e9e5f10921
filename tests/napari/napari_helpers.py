"""Tiny models and data for the napari plugin's tests (imported as ``from napari_helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

INSTANCE_VALUES = (0, 1, 2)
INSTANCE_NAMES = ("background", "interior", "boundary")


def tiny_model(path: Path, instances: bool = True) -> Path:
    """An untrained base-4, depth-2 U-Net (seed 0) saved at ``path``: an instance model, or a 2-class one."""
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    keras.utils.set_random_seed(0)
    architecture = ModelConfig(base_filters=4, depth=2)
    if instances:
        info = ModelInfo(
            INSTANCE_VALUES, INSTANCE_NAMES, patch_size=64, size_divisor=4, label_mode="instances",
            target="instances", model=architecture,
        )  # fmt: skip
    else:
        info = ModelInfo((0, 255), ("background", "object"), patch_size=64, size_divisor=4, model=architecture)
    model = attach_info(build_model(architecture, len(info.class_values)), info)
    model.save(path)
    return path


def tem_pairs(n: int, size: int = 96) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` synthetic TEM images (uint16) and their object ids (seeds 0..n-1)."""
    from unet_tf.synthetic.image import generate_tem_sample

    samples = [generate_tem_sample(size, seed=i) for i in range(n)]
    return [s.image for s in samples], [s.instances for s in samples]


def count_until_stopped(*, progress, stop, limit: float = 30.0) -> int:
    """A model-process job for the tests: reports progress until ``stop()`` (or ``limit`` seconds); the steps."""
    import time

    done, start = 0, time.monotonic()
    while not stop() and time.monotonic() - start < limit:
        done += 1
        progress(done, 0)
        time.sleep(0.01)
    return done
