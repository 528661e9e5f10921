"""Segment images with a trained model: :func:`predict_image` on arrays, :func:`predict_files` on files.

``predict_image`` is the one prediction path: normalize with the model's own
percentiles -> tiled, blended probabilities -> class ids -> label values.
``predict_files`` (behind ``predict.py``, the web app and the ablation) reads
each file, calls it, and writes for each image ``<stem>``: ``<stem>_mask.tif``
(original label values), ``<stem>_overlay.png`` (classes coloured over the
image, with a legend) and optionally ``<stem>_prob.tif`` (float32, one band per
class); for the whole run ``objects.csv`` and ``objects_summary.csv``, and with
ground truth ``metrics.csv``. Every file is written atomically.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import PredictConfig
from .datasets import Sample, read_class_ids
from .errors import UserInputError
from .evaluation import Evaluator
from .inference import ProgressBar, ProgressFn, check_tiling, make_predict_fn, predict_tiled, probabilities_to_ids
from .inputs import check_output_names, shard_suffix
from .io import read_image, write_mask, write_tiff
from .model_file import ModelInfo, read_info
from .morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, measure_objects, summarize_objects
from .overlay import overlay_image, write_png
from .preprocessing import ids_to_values, percentile_normalize
from .tables import write_csv


@dataclass(frozen=True)
class Prediction:
    """The segmentation of one image.

    Attributes:
        probabilities: float32 (H, W, K): K = 1 (P(class 1)) for a binary
            model, else one channel per class.
        ids: uint8 (H, W) class ids 0..C-1.
        mask: (H, W) the class ids as the label values of the training data.
    """

    probabilities: np.ndarray
    ids: np.ndarray
    mask: np.ndarray


_PREDICT_FNS: "weakref.WeakKeyDictionary[Any, Callable]" = weakref.WeakKeyDictionary()


def engine(model: Any) -> tuple[Callable[[np.ndarray], np.ndarray], ModelInfo]:
    """(batch -> probabilities function, ModelInfo) of a Keras model or of an object with ``.info``.

    The compiled function of a Keras model is kept for the model's lifetime,
    so calling :func:`predict_image` in a loop traces it once.
    """
    info = getattr(model, "info", None)
    if isinstance(info, ModelInfo):  # e.g. an ONNX model: callable on batches
        return model, info
    if model not in _PREDICT_FNS:
        _PREDICT_FNS[model] = make_predict_fn(model)
    return _PREDICT_FNS[model], read_info(model)


def predict_image(
    model: Any,
    image: np.ndarray,
    config: PredictConfig = PredictConfig(),
    *,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Prediction:
    """Segment one 2-D image at full resolution.

    Args:
        model: a model from :func:`unet_tf.load_model` (or returned by training).
        image: (H, W) array of any numeric dtype, raw (not normalized): the
            model's own percentile stretch is applied here.
        config: PredictConfig. Tiling and threshold settings; defaults as
            ``predict.py``.
        progress: optional ``progress(done_tiles, total_tiles)`` callback.
        **options: PredictConfig fields overriding ``config``: ``tile`` (512),
            ``overlap`` (64), ``batch_size`` (4), ``tta`` (False),
            ``threshold`` (0.5, binary models).

    Returns:
        :class:`Prediction` with probabilities, class ids and the label-value mask.

    Example:
        >>> model = unet_tf.load_model("runs/tem/best.keras")  # doctest: +SKIP
        >>> result = unet_tf.predict_image(model, unet_tf.read_image("scan.tif"), tile=256)  # doctest: +SKIP
        >>> result.mask.shape == result.ids.shape  # doctest: +SKIP
        True
    """
    config = replace(config, **options) if options else config
    predict_fn, info = engine(model)
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise UserInputError(f"image: expected a non-empty 2-D (H, W) array, received shape {image.shape}")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise UserInputError("image: holds NaN or infinite values")
    norm = info.normalize
    normalized = percentile_normalize(image, norm.pmin, norm.pmax, clip=norm.clip)
    prob = predict_tiled(
        predict_fn, normalized, tile=config.tile, overlap=config.overlap, batch_size=config.batch_size,
        size_divisor=info.size_divisor, tta=config.tta, progress=progress,
    )
    ids = probabilities_to_ids(prob, config.threshold)
    return Prediction(prob, ids, ids_to_values(ids, info.class_values))


def probability_bands(prob: np.ndarray) -> np.ndarray:
    """(K', H, W) float32 bands of a probability map: both classes for a binary model."""
    bands = np.concatenate([1 - prob, prob], axis=-1) if prob.shape[-1] == 1 else prob
    return np.moveaxis(bands, -1, 0).astype(np.float32)


def write_outputs(out_dir: Path, name: str, image: np.ndarray, result: Prediction,
                  info: ModelInfo, config: PredictConfig) -> None:
    """The per-image files: mask, overlay and (if asked) probabilities."""
    write_mask(out_dir / f"{name}_mask.tif", result.mask)
    if config.overlay:
        write_png(out_dir / f"{name}_overlay.png", overlay_image(image, result.ids, info.class_names))
    if config.save_probabilities:
        write_tiff(out_dir / f"{name}_prob.tif", probability_bands(result.probabilities))


def _prepare(samples: Sequence[Sample], info: ModelInfo, out_dir: Path, config: PredictConfig) -> None:
    """Check everything that can be checked before minutes of prediction."""
    check_tiling(config.tile, config.overlap, info.size_divisor)
    check_output_names(samples)
    spec = info.spec
    for sample in samples:
        if sample.labels:
            read_class_ids(sample, spec)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None


def _score(sample: Sample, result: Prediction, info: ModelInfo, evaluator: Evaluator,
           log: Callable[[str], None]) -> bool:
    """Add the image's scores to ``evaluator``; False when its label does not fit."""
    truth = read_class_ids(sample, info.spec)
    if truth.shape != result.ids.shape:
        log(f"error: {sample.labels[0]}: label size {truth.shape[1]}x{truth.shape[0]} differs from image "
            f"{result.ids.shape[1]}x{result.ids.shape[0]} (not evaluated)")
        return False
    evaluator.add(sample.image.stem, truth, result.ids)
    return True


def _write_tables(out_dir: Path, objects: list[dict], done: list[str], evaluator: Evaluator,
                  info: ModelInfo, config: PredictConfig, log: Callable[[str], None]) -> list[dict]:
    tag = shard_suffix(*config.shard)
    if done:
        write_csv(out_dir / f"objects{tag}.csv", objects, OBJECT_COLUMNS)
        summary = summarize_objects(objects, info.class_names, done, pixel_size=config.pixel_size)
        write_csv(out_dir / f"objects_summary{tag}.csv", summary, SUMMARY_COLUMNS)
    rows = evaluator.rows()
    if rows:
        evaluator.write_csv(out_dir / f"metrics{tag}.csv")
        log(evaluator.format_table())
    return rows


def predict_files(
    model: Any,
    samples: Sequence[Sample],
    out_dir: str | Path,
    config: PredictConfig = PredictConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Predict every sample, write its outputs, evaluate where labels exist.

    Returns a dict: ``done`` (image stems), ``failed`` (paths), ``metrics``
    (the rows of ``metrics.csv``), ``objects`` (their count) and
    ``wall_seconds``. An image that cannot be read is reported by name and
    skipped.
    """
    out_dir = Path(out_dir)
    info = engine(model)[1]
    _prepare(samples, info, out_dir, config)
    evaluator = Evaluator(info.class_names)
    objects: list[dict] = []
    failed: list[str] = []
    done: list[str] = []
    t0 = time.perf_counter()
    for index, sample in enumerate(samples, 1):
        name = sample.image.stem
        try:
            image = read_image(sample.image)
        except UserInputError as exc:
            log(f"error: {exc} (skipped)")
            failed.append(str(sample.image))
            continue
        bar = ProgressBar(f"image {index}/{len(samples)} {name}")
        result = predict_image(model, image, config, progress=bar)
        bar.close()
        write_outputs(out_dir, name, image, result, info, config)
        if sample.labels and not _score(sample, result, info, evaluator, log):
            failed.append(str(sample.labels[0]))
        objects += measure_objects(result.ids, info.class_names, image_name=name,
                                   pixel_size=config.pixel_size, min_size=config.min_size)
        done.append(name)
    wall = time.perf_counter() - t0
    rows = _write_tables(out_dir, objects, done, evaluator, info, config, log)
    log(f"{len(done)} image(s) segmented in {wall:.1f} s; outputs in {out_dir}")
    return {"done": done, "failed": failed, "metrics": rows, "objects": len(objects), "wall_seconds": wall}
