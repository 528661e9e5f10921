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
from .datasets import Sample, read_class_ids, read_instances
from .errors import UserInputError
from .evaluation import Evaluator
from .inference import ProgressBar, ProgressFn, check_tiling, make_predict_fn, predict_rows, probabilities_to_ids
from .inputs import check_output_names, shard_suffix
from .instance_metrics import INSTANCE_COLUMNS, InstanceEvaluator
from .instances import instances_for
from .io import iter_pages, mask_dtype, page_count, read_image
from .model_file import ModelInfo, min_size_for, read_info, tiling_options
from .morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, measure_objects, summarize_objects
from .notes import quiet_run, say_note
from .outputs import ImageOutputs, probability_bands, write_outputs  # noqa: F401  (public here too)
from .preprocessing import ids_to_values, percentile_limits, stretch
from .streaming import predict_file_streaming, should_stream
from .tables import format_table, write_csv
from .targets import IGNORE_ID
from .tiff_meta import pixel_size_um


@dataclass(frozen=True)
class Prediction:
    """The segmentation of one image.

    Attributes:
        probabilities: float32 (H, W, K): K = 1 (P(class 1)) for a binary
            model, else one channel per class.
        ids: uint8 (H, W) class ids 0..C-1.
        mask: (H, W) the class ids as the label values of the training data,
            uint8 (uint16 when a value exceeds 255: ``io.mask_dtype``).
        instances: int32 (H, W) one id per object (0 background), for an
            instance model or with ``split_touching``; else None.
    """

    probabilities: np.ndarray
    ids: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None = None


@dataclass
class Scores:
    """The scores of a run, added to one image at a time: semantic (per class) and per object."""

    semantic: Evaluator
    instances: InstanceEvaluator


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


def _checked_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a non-empty 2-D array of finite values, else UserInputError."""
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise UserInputError(f"image: expected a non-empty 2-D (H, W) array, received shape {image.shape}")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise UserInputError("image: holds NaN or infinite values")
    return image


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
            ``threshold`` (0.5: foreground of binary models, interior seeds
            of instance models), ``min_size`` (None: the model's own
            ``ModelInfo.min_size``, else 0; smallest object in px),
            ``split_touching`` (False: split touching objects of a semantic
            model's classes into instances).

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
    min_size = min_size_for(config, info)[0]
    image = _checked_image(image)
    norm = info.normalize
    lo, hi = percentile_limits(image, norm.pmin, norm.pmax)  # percentile_normalize's stretch, on rows:
    prob = predict_rows(  # no normalized float32 copy of the whole image is held
        predict_fn,
        lambda row0, row1: stretch(image[row0:row1], lo, hi, clip=norm.clip),
        image.shape,
        **tiling_options(config, info),
        progress=progress,
    )
    ids = probabilities_to_ids(prob, config.threshold)
    instances = instances_for(
        prob, ids, info.target, threshold=config.threshold, min_size=min_size, split=config.split_touching
    )
    values = np.asarray(info.class_values, mask_dtype(max(info.class_values)))  # the file's dtype, not int64
    return Prediction(prob, ids, ids_to_values(ids, values), instances)


def _prepare(samples: Sequence[Sample], info: ModelInfo, out_dir: Path, config: PredictConfig) -> None:
    """Check everything that can be checked before minutes of prediction."""
    check_tiling(config.tile, config.overlap, info.size_divisor)
    check_output_names(samples)
    for sample in samples:
        if sample.labels:
            pages = page_count(sample.image)
            for label in sample.labels:
                if page_count(label) != pages:
                    raise UserInputError(
                        f"{label}: {page_count(label)} page(s), but the image {sample.image.name} has {pages}"
                    )
            for page in range(pages) if pages > 1 else (None,):
                read_class_ids(replace(sample, page=page), info.spec)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None


def _pixel_size(path: Path, config: PredictConfig, said: set, log: Callable[[str], None]) -> float | None:
    """``config.pixel_size`` if given, else the file's own (TIFF metadata); where it came from is said once."""
    if config.pixel_size is not None:
        value, source = config.pixel_size, "--pixel-size"
    else:
        value, source = pixel_size_um(path)
    if (value, source) not in said:
        said.add((value, source))
        log(
            f"pixel size: {value:g} µm ({source}; {path.name})"
            if value
            else f"pixel size: unknown for {path.name} ({source}); give --pixel-size for µm columns"
        )
    return value


def _pages(path: Path, n_pages: int):
    """(page index, 2-D image) one page at a time; a single image is page 0."""
    if n_pages == 1:
        yield 0, read_image(path)
    else:
        yield from enumerate(iter_pages(path))


def _score(
    sample: Sample, page: int | None, result: Prediction, info: ModelInfo, scores: Scores, log: Callable[[str], None]
) -> bool:
    """Add the image's scores to ``scores``; False when its label does not fit."""
    truth = read_class_ids(replace(sample, page=page), info.spec)
    if truth.shape != result.ids.shape:
        log(
            f"error: {sample.labels[0]}: label size {truth.shape[1]}x{truth.shape[0]} differs from image "
            f"{result.ids.shape[1]}x{result.ids.shape[0]} (not evaluated)"
        )
        return False
    scores.semantic.add(sample.image.stem, truth, result.ids, page=None if page is None else page + 1)
    if info.target == "instances":
        paged = replace(sample, page=page)
        name = sample.image.stem if page is None else f"{sample.image.stem}:p{page + 1}"
        ignore = truth == IGNORE_ID
        scores.instances.add(name, read_instances(paged, info.spec), result.instances, ignore if ignore.any() else None)
    return True


def object_rows(
    result: Prediction, info: ModelInfo, image: np.ndarray, name: str, pixel_size: float | None, min_size: int
) -> list[dict]:
    """Object rows: one per instance (instance model: class "object") or per connected component of a class."""
    if info.target == "instances":
        ids, names = (result.instances > 0).astype(np.uint8), ("background", "object")
    else:
        ids, names = result.ids, info.class_names
    return measure_objects(
        ids, names, image_name=name, pixel_size=pixel_size, min_size=min_size, instances=result.instances, image=image
    )


def _predict_sample(
    model: Any,
    sample: Sample,
    label: str,
    out_dir: Path,
    config: PredictConfig,
    scores: Scores,
    pixel_size: float | None,
    log: Callable[[str], None],
) -> tuple[list, bool]:
    """Segment one image or stack, write its files; (object rows, whether its labels fitted)."""
    info = engine(model)[1]
    n_pages = page_count(sample.image)
    rows: list[dict] = []
    fitted = True
    with ImageOutputs(out_dir, sample.image.stem, n_pages, info, config, pixel_size) as outputs:
        for page, image in _pages(sample.image, n_pages):
            number = None if n_pages == 1 else page
            bar = ProgressBar(label if n_pages == 1 else f"{label} page {page + 1}/{n_pages}")
            result = predict_image(model, image, config, progress=bar)
            bar.close()
            outputs.add(number, image, result)
            if sample.labels:
                fitted &= _score(sample, number, result, info, scores, log)
            objects = object_rows(result, info, image, sample.image.stem, pixel_size, config.min_size)
            rows += [{**row, "page": None if number is None else number + 1} for row in objects]
    return rows, fitted


def _streams(sample: Sample, info: ModelInfo, config: PredictConfig, log: Callable[[str], None]) -> bool:
    """Whether a single-page image goes through the band-wise path: ``stream``, or too large to predict
    whole in the memory available (:func:`unet_tf.streaming.should_stream`); the reason is logged."""
    if page_count(sample.image) > 1:
        return False
    too_big, reason = should_stream(sample.image, info, config)
    if info.target == "instances" or config.split_touching:
        if too_big:
            log(f"warning: {reason}; instances cannot be predicted in bands, so it is predicted whole")
        return False
    if not (config.stream or too_big):
        return False
    log(f"note: {reason}: predicted in bands" if too_big else f"note: {sample.image.name}: predicted in bands (stream)")
    if sample.labels:
        say_note("labels of images predicted in bands are not scored (whole-image path only)", sample.image.name)
    return True


def _stream_sample(model: Any, sample: Sample, label: str, out_dir: Path, config: PredictConfig) -> tuple[list, bool]:
    """Segment one large image band by band (:mod:`unet_tf.streaming`); (object rows, True)."""
    predict_fn, info = engine(model)
    bar = ProgressBar(f"{label} (in bands)")
    result = predict_file_streaming(predict_fn, info, sample.image, out_dir, sample.image.stem, config, progress=bar)
    bar.close()
    return result["objects"], True


def _write_tables(
    out_dir: Path,
    objects: list[dict],
    done: list[str],
    scores: Scores,
    info: ModelInfo,
    config: PredictConfig,
    log: Callable[[str], None],
) -> list[dict]:
    tag = shard_suffix(*config.shard)
    if done:
        write_csv(out_dir / f"objects{tag}.csv", objects, OBJECT_COLUMNS)
        summary = summarize_objects(objects, info.class_names, done, pixel_size=config.pixel_size)
        write_csv(out_dir / f"objects_summary{tag}.csv", summary, SUMMARY_COLUMNS)
    rows = scores.semantic.rows()
    if rows:
        scores.semantic.write_csv(out_dir / f"metrics{tag}.csv")
        log(scores.semantic.format_table())
    instance_rows = scores.instances.rows()
    if instance_rows:
        write_csv(out_dir / f"instance_metrics{tag}.csv", instance_rows, INSTANCE_COLUMNS)
        log(format_table(instance_rows, INSTANCE_COLUMNS, digits=3))
    return rows


@quiet_run()  # notes said once per run, TensorFlow's native log lines hidden
def predict_files(
    model: Any,
    samples: Sequence[Sample],
    out_dir: str | Path,
    config: PredictConfig = PredictConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Predict every sample (an image or a multi-page stack), write its outputs, evaluate where labels exist.

    Returns a dict: ``done`` (image stems), ``failed`` (paths), ``metrics``
    (the rows of ``metrics.csv``), ``objects`` (their count) and
    ``wall_seconds``. An image that cannot be read is reported by name and
    skipped. The pixel size is ``config.pixel_size`` or the file's own.
    """
    out_dir = Path(out_dir)
    info = engine(model)[1]
    _prepare(samples, info, out_dir, config)
    min_size, source = min_size_for(config, info)
    config = replace(config, min_size=min_size)
    log(f"minimum object size: {min_size} px ({source})")
    scores = Scores(Evaluator(info.class_names), InstanceEvaluator())
    objects: list[dict] = []
    failed: list[str] = []
    done: list[str] = []
    said: set = set()
    t0 = time.perf_counter()
    for index, sample in enumerate(samples, 1):
        label = f"image {index}/{len(samples)} {sample.image.stem}"
        try:
            pixel_size = _pixel_size(sample.image, config, said, log)
            if _streams(sample, info, config, log):
                rows, fitted = _stream_sample(model, sample, label, out_dir, replace(config, pixel_size=pixel_size))
            else:
                rows, fitted = _predict_sample(model, sample, label, out_dir, config, scores, pixel_size, log)
        except UserInputError as exc:
            log(f"error: {exc} (skipped)")
            failed.append(str(sample.image))
            continue
        if not fitted:
            failed.append(str(sample.labels[0]))
        objects += rows
        done.append(sample.image.stem)
    wall = time.perf_counter() - t0
    rows = _write_tables(out_dir, objects, done, scores, info, config, log)
    log(f"{len(done)} image(s) segmented in {wall:.1f} s; outputs in {out_dir}")
    return {"done": done, "failed": failed, "metrics": rows, "objects": len(objects), "wall_seconds": wall}
