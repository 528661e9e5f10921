"""napari writer for Labels layers: a uint16 TIFF with the pixel size, what ``predict.py`` writes as
``_instances.tif`` (:func:`unet_tf.prediction.outputs.write_instances`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unet_tf.io.writers import StackWriter
from unet_tf.napari.logic import METADATA_KEY
from unet_tf.prediction.outputs import INSTANCE_DTYPE, write_instances


def pixel_size_of(meta: dict) -> float | None:
    """µm per px of a layer: its own segmentation's pixel size, else its scale when that is not 1."""
    stored = (meta.get("metadata") or {}).get(METADATA_KEY, {}).get("pixel_size")
    if stored:
        return float(stored)
    scale = meta.get("scale")
    if scale is not None and len(scale) and float(scale[-1]) not in (0.0, 1.0):
        return float(scale[-1])
    return None


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer's data to ``path`` (.tif): 2-D as one page, a stack page by page, uint16 (uint32
    for a 2-D layer with more than 65535 objects) with the pixel size. Returns the paths written."""
    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_suffix(".tif")
    array = np.asarray(data)
    pixel_size = pixel_size_of(meta)
    if array.ndim == 2:
        write_instances(target, array, pixel_size)
    else:
        planes = array.reshape((-1, *array.shape[-2:]))
        with StackWriter(target, len(planes), INSTANCE_DTYPE, pixel_size) as writer:
            for plane in planes:
                writer.append(plane)
    return [str(target)]
