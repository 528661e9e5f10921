"""napari sample data: a synthetic TEM image with its objects and classes, made in memory (no download).

The image is :func:`unet_tf.synthetic.generate_tem_sample` (the embedded demo
set's generator, seed 0): a new user can segment, correct and fine-tune without
data of their own.
"""

from __future__ import annotations

from unet_tf.synthetic import TEM_CLASS_NAMES, TEM_CLASS_VALUES

SAMPLE_SIZE = 256  # px: every class is present from 256 on, and a CPU segments it in seconds
SAMPLE_SEED = 0


def tem_sample(size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> list[tuple]:
    """[(image, kwargs, "image"), (instances, kwargs, "labels"), (classes, kwargs, "labels")] of one synthetic
    TEM image: uint16 gray image, uint16 object ids (0 background), uint8 class values (0/50/100/150/200)."""
    from unet_tf.synthetic.image import generate_tem_sample

    sample = generate_tem_sample(size, seed=seed)
    classes = ", ".join(f"{v} {n}" for v, n in zip(TEM_CLASS_VALUES, TEM_CLASS_NAMES))
    return [
        (sample.image, {"name": "synthetic TEM"}, "image"),
        (sample.instances, {"name": "synthetic TEM objects", "visible": False}, "labels"),
        (sample.label, {"name": "synthetic TEM classes", "visible": False, "metadata": {"classes": classes}}, "labels"),
    ]
