"""Segment image files: :func:`predict_files`, behind ``predict.py``, the web app and the ablation.

Each sample (an image or a multi-page stack, with optional labels) is read
page by page and segmented with :func:`unet_tf.prediction.image.predict_image`;
a single-page image too large to predict whole goes band by band through
:mod:`unet_tf.prediction.streaming`. For each image ``<stem>`` it writes
(:class:`unet_tf.prediction.outputs.ImageOutputs`) ``<stem>_mask.tif``
(original label values), ``<stem>_overlay.png`` (classes coloured over the
image, with a legend), ``<stem>_instances.tif`` for an instance model or with
``split_touching``, and optionally ``<stem>_prob.tif`` (float32, one band per
class); for the whole run ``objects.csv`` and ``objects_summary.csv``, and with
ground truth ``metrics.csv`` (and ``instance_metrics.csv``). Every file is
written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.data.labels import read_class_ids, read_instances
from unet_tf.data.layouts import Sample
from unet_tf.data.targets import IGNORE_ID
from unet_tf.errors import UserInputError, say_note
from unet_tf.evaluation.matching import INSTANCE_COLUMNS, InstanceEvaluator
from unet_tf.evaluation.semantic import Evaluator
from unet_tf.io.images import iter_pages, page_count, read_image, stack_axes
from unet_tf.io.metadata import pixel_size_um
from unet_tf.io.tables import format_table, write_csv
from unet_tf.models.file import ModelInfo, foreground_threshold_for, min_size_for
from unet_tf.objects.morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, measure_objects, summarize_objects
from unet_tf.prediction.image import Prediction, engine, predict_image
from unet_tf.prediction.inputs import check_output_names, shard_suffix
from unet_tf.prediction.outputs import ImageOutputs
from unet_tf.prediction.streaming import predict_file_streaming, should_stream
from unet_tf.prediction.tiled import ProgressBar, check_tiling
from unet_tf.runtime import quiet_run


@dataclass
class Scores:
    """The scores of a run, added to one image at a time: semantic (per class) and per object."""

    semantic: Evaluator
    instances: InstanceEvaluator


def _check_channels(path: Path) -> None:
    """UserInputError for a stack with a channel axis: the model reads one gray plane per image (a file that
    cannot be read is reported, and skipped, when its turn comes)."""
    try:
        axes, shape = stack_axes(path)
    except UserInputError:
        return
    channels = dict(zip(axes, shape)).get("C", 1)
    if channels > 1:
        raise UserInputError(
            f"{path}: holds {channels} channels (axes {axes}YX, {'x'.join(map(str, shape))}), but the model reads "
            "1 channel (one gray plane; RGB is read as luminance): save the channel to segment as its own image "
            "(a time-lapse: `track.channel` picks one)"
        )


def _prepare(samples: Sequence[Sample], info: ModelInfo, out_dir: Path, config: PredictConfig) -> None:
    """Check everything that can be checked before minutes of prediction."""
    check_tiling(config.tile, config.overlap, info.size_divisor)
    check_output_names(samples)
    for sample in samples:
        _check_channels(sample.image)
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
        value, source = config.pixel_size, "`predict.pixel_size`"
    else:
        value, source = pixel_size_um(path)
    if (value, source) not in said:
        said.add((value, source))
        log(
            f"pixel size: {value:g} µm ({source}; {path.name})"
            if value
            else f"pixel size: unknown for {path.name} ({source}); give `predict.pixel_size` for µm columns"
        )
    return value


def _scale_text(info: ModelInfo) -> str:
    """The run's line on the model's object scale (what each image is brought to)."""
    if not (info.object_diameter or info.pixel_size_um):
        return "object scale: the model holds no object diameter: images are not resized"
    known = (
        f"{info.object_diameter:g} px object diameter" if info.object_diameter else "",
        f"{info.pixel_size_um:g} µm pixels" if info.pixel_size_um else "",
    )
    how = (
        ""
        if info.target == "instances"
        else "; a semantic model only by `predict.diameter` or pixel sizes, not by an estimate"
    )
    return f"object scale: images are resized to the model's ({', '.join(k for k in known if k)}){how}"


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
    """Object rows: one per instance (instance model: class "object") or per connected component of a class,
    with the scale factor the image was segmented at. ``min_size`` is in px at the model's scale."""
    if info.target == "instances":
        ids, names = (result.instances > 0).astype(np.uint8), ("background", "object")
    else:
        ids, names = result.ids, info.class_names
    factor = result.scale_factor
    size = min_size if factor == 1.0 or not min_size else int(min_size / factor**2)  # in the image's px
    rows = measure_objects(
        ids, names, image_name=name, pixel_size=pixel_size, min_size=size, instances=result.instances, image=image
    )
    return [{**row, "scale_factor": factor, "scale_source": result.scale_source} for row in rows]


def scale_line(name: str, result: Prediction) -> str:
    """The log line of the object scale an image was segmented at."""
    if result.scale_factor == 1.0:
        return f"{name}: object scale x1 ({result.scale_source}: not resized)"
    return f"{name}: object scale x{result.scale_factor:.3g} ({result.scale_source})"


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
    scaled = replace(config, pixel_size=pixel_size)  # the image's own pixel size sets its object scale
    with ImageOutputs(out_dir, sample.image.stem, n_pages, info, config, pixel_size) as outputs:
        for page, image in _pages(sample.image, n_pages):
            number = None if n_pages == 1 else page
            bar = ProgressBar(label if n_pages == 1 else f"{label} page {page + 1}/{n_pages}")
            name = sample.image.name if n_pages == 1 else f"{sample.image.name} page {page + 1}"
            result = predict_image(model, image, scaled, progress=bar, name=name)
            bar.close()
            if info.object_diameter or info.pixel_size_um:
                log(scale_line(name, result))
            outputs.add(number, image, result)
            if sample.labels:
                fitted &= _score(sample, number, result, info, scores, log)
            objects = object_rows(result, info, image, sample.image.stem, pixel_size, config.min_size)
            rows += [{**row, "page": None if number is None else number + 1} for row in objects]
    return rows, fitted


def _streams(sample: Sample, info: ModelInfo, config: PredictConfig, log: Callable[[str], None]) -> bool:
    """Whether a single-page image goes through the band-wise path: ``stream``, or too large to predict
    whole in the memory available (:func:`unet_tf.prediction.streaming.should_stream`); the reason is logged."""
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
    """Segment one large image band by band (:mod:`unet_tf.prediction.streaming`, at the image's own scale);
    (object rows, True)."""
    predict_fn, info = engine(model)
    bar = ProgressBar(f"{label} (in bands)")
    result = predict_file_streaming(predict_fn, info, sample.image, out_dir, sample.image.stem, config, progress=bar)
    bar.close()
    return [{**row, "scale_factor": 1.0, "scale_source": "none"} for row in result["objects"]], True


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
    if info.target == "instances":
        foreground, source = foreground_threshold_for(config, info)
        config = replace(config, foreground_threshold=foreground)
        log(f"objects where interior + boundary probability > {foreground:g} ({source})")
    log(_scale_text(info))
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
