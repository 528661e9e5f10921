"""What a Dask worker runs: one block's prediction, its statistics, its final relabelling.

The model is loaded ONCE PER WORKER PROCESS: :func:`cached_engine` is an
``lru_cache`` keyed by the model file's path and modification time, so every
later block on that worker reuses the loaded network and its compiled
function; nothing of the model is pickled from the client.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.data.normalize import ids_to_values, stretch, values_to_ids
from unet_tf.io.writers import mask_dtype
from unet_tf.io.zarr import open_image, open_output
from unet_tf.models.file import ModelInfo, foreground_threshold_for, min_size_for
from unet_tf.objects.instances import instances_for
from unet_tf.prediction.tiled import probabilities_to_ids

from . import _store
from ._merge import ring
from ._plan import Block, BlockPlan
from ._predict import predict_region, window_statistics


@functools.lru_cache(maxsize=2)
def cached_engine(path: str, mtime: float, precision: str = "float32") -> tuple[Callable, ModelInfo]:
    """(batch -> probabilities function, ModelInfo) of the model file computing in ``precision``, loaded once
    per process, file version and precision."""
    from unet_tf.models.file import load_model_and_info
    from unet_tf.prediction.image import engine
    from unet_tf.runtime import import_tensorflow

    import_tensorflow()
    model, _ = load_model_and_info(path, precision=precision)
    return engine(model)


def model_info(path: str, mtime: float, precision: str) -> tuple[ModelInfo, str, str]:
    """(ModelInfo, precision, why), read on a worker (the client imports no TensorFlow): ``precision``
    (``auto`` too) resolved for that worker's CPU, then pinned for every block so the blocks agree."""
    from unet_tf.runtime import import_tensorflow
    from unet_tf.training.precision import resolve_predict_precision

    tf = import_tensorflow()
    resolved, why = resolve_predict_precision(precision, gpus=len(tf.config.list_physical_devices("GPU")))
    return cached_engine(path, mtime, resolved)[1], resolved, why


@dataclass(frozen=True)
class BlockJob:
    """Everything a block task needs; small and picklable (the model travels as a path)."""

    model: str
    mtime: float
    input: str
    out: str
    plan: BlockPlan
    limits: tuple[float, float]
    config: PredictConfig
    instances: bool
    split: bool = False  # a semantic model's split_touching: labels after the whole mask (split_block)
    engine: Callable[[str, float], tuple[Callable, ModelInfo]] = cached_engine


def block_statistics(input_path: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """:func:`window_statistics` of the raw image in ``box``."""
    y0, y1, x0, x1 = box
    with open_image(input_path) as lazy:
        return window_statistics(lazy.array[y0:y1, x0:x1], int(lazy.shape[0]) * int(lazy.shape[1]))


def run_block(job: BlockJob, block: Block) -> int:
    """Predict one block, write its interior into the output arrays, then its npz and marker; its object count."""
    with open_image(job.input) as lazy:
        return _run_block(job, block, lazy.array)


def _run_block(job: BlockJob, block: Block, image) -> int:
    predict_fn, info = job.engine(job.model, job.mtime, job.config.precision)
    norm, config, (lo, hi) = info.normalize, job.config, job.limits
    prob = predict_region(
        predict_fn,
        lambda rows, cols: stretch(image[rows, cols], lo, hi, norm.clip),
        job.plan,
        block.region,
        batch_size=config.batch_size,
        tta=config.tta,
    )
    ids = probabilities_to_ids(prob, config.threshold)
    (y0, y1, x0, x1), (r0, _, c0, _) = block.interior, block.region
    inner = (slice(y0 - r0, y1 - r0), slice(x0 - c0, x1 - c0))
    out = open_output(job.out)
    values = np.asarray(info.class_values, mask_dtype(max(info.class_values)))
    out.image[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    out.mask[y0:y1, x0:x1] = ids_to_values(ids[inner], values)
    if config.save_probabilities:
        out.probabilities[:, y0:y1, x0:x1] = np.moveaxis(prob[inner], -1, 0)
    labels = None
    if job.instances and not job.split:
        size = min_size_for(config, info)[0]
        foreground = foreground_threshold_for(config, info)[0]
        labels = instances_for(
            prob, ids, info.target, threshold=config.threshold, min_size=size, foreground_threshold=foreground
        )
    arrays = _label_arrays(job, block, labels)
    _store.save_block(job.out, block.name, **arrays)
    return int(arrays["count"])


def _label_arrays(job: BlockJob, block: Block, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """The region's instance labels: their interior into the provisional ids; what the merge needs of the
    block (ring, count, present ids with the raster index of their first pixel in the image)."""
    if labels is None:
        empty = np.zeros(0, np.int64)
        return {"ring": np.zeros((0, 0), np.int32), "count": np.int64(0), "present": empty, "firsts": empty}
    (y0, y1, x0, x1), (r0, _, c0, _) = block.interior, block.region
    inner = labels[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
    _store.provisional(job.out)[y0:y1, x0:x1] = inner.astype(np.uint32)
    present, index = np.unique(inner, return_index=True)
    keep = present > 0
    rows, cols = np.divmod(index[keep], x1 - x0)
    firsts = (rows + y0) * job.plan.shape[1] + cols + x0
    return {
        "ring": ring(labels, block, job.plan.halo),
        "count": np.int64(labels.max() if labels.size else 0),
        "present": present[keep].astype(np.int64),
        "firsts": firsts.astype(np.int64),
    }


def split_block(job: BlockJob, block: Block, radii: dict[int, float]) -> int:
    """``split_touching`` of a semantic model's block, once the whole mask is written: the region's classes
    split with the WHOLE image's median inscribed ``radii`` (class id -> px); the labels as :func:`run_block`
    keeps them, in ``<name>.split`` files; the block's label count."""
    _, info = job.engine(job.model, job.mtime, job.config.precision)
    r0, r1, c0, c1 = block.region
    ids = values_to_ids(np.asarray(open_output(job.out).mask[r0:r1, c0:c1]), info.class_values, job.out)
    size = min_size_for(job.config, info)[0]
    labels = instances_for(None, ids, "semantic", min_size=size, split=True, radii=radii)
    arrays = _label_arrays(job, block, labels)
    _store.save_block(job.out, f"{block.name}.split", **arrays)
    return int(arrays["count"])


def relabel_block(out: str, block: Block, lookup: np.ndarray) -> None:
    """Final instance ids of one block's interior: its provisional ids through ``lookup``."""
    y0, y1, x0, x1 = block.interior
    provisional = np.asarray(_store.provisional(out)[y0:y1, x0:x1])
    open_output(out).instances[y0:y1, x0:x1] = lookup[provisional].astype(np.uint32)
