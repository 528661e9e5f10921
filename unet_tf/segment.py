"""Segment images with a trained model: read -> normalize -> tiled predict -> outputs.

For each image ``<stem>``: ``<stem>_mask.tif`` (original label values),
``<stem>_overlay.png`` (classes coloured over the image, with a legend) and
optionally ``<stem>_prob.tif`` (float32, one band per class). For the whole run:
``objects.csv`` and ``objects_summary.csv``, and with ground truth
``metrics.csv``. Every file is written atomically.

Several machines (or processes) can share the images of one run:
:func:`shard_samples` gives worker ``i`` of ``n`` every ``n``-th image, and
``PredictOptions.shard`` names its tables ``metrics.shard-i-of-n.csv`` (and so
on) so that all workers can write into the same folder.
"""
from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .datasets import DatasetSpec, Sample, mask_key, list_samples
from .errors import UserInputError
from .io import atomic_path, is_image_file, read_image, read_label, write_mask, write_tiff
from .preprocessing import ids_to_values, percentile_normalize, values_to_ids

# Class colours (RGB) for overlays; class 0 (background) is left uncoloured.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
)


@dataclass(frozen=True)
class PredictOptions:
    tile: int = 512
    overlap: int = 64
    batch_size: int = 4
    tta: bool = False
    threshold: float = 0.5
    save_probabilities: bool = False
    overlay: bool = True
    pixel_size: float | None = None
    min_size: int = 0
    shard: tuple[int, int] = (0, 1)  # (index, count): this run is shard index of count; names the tables


def shard_suffix(index: int, count: int) -> str:
    """``""`` for one shard, else ``.shard-<index>-of-<count>`` (before the ``.csv`` of each table)."""
    return "" if count == 1 else f".shard-{index}-of-{count}"


def shard_samples(samples: Sequence[Sample], index: int, count: int) -> list[Sample]:
    """Worker ``index`` (0-based) of ``count``: every ``count``-th sample of the list sorted by image path.

    The ``count`` shards are disjoint and together hold every sample once,
    whatever order each worker listed its inputs in; their sizes differ by at
    most one.
    """
    if count < 1 or not 0 <= index < count:
        raise UserInputError(f"--shard {index}/{count}: need 0 <= i < n, e.g. 0/2 and 1/2")
    ordered = sorted(samples, key=lambda s: str(s.image))
    return ordered[index::count]


def check_output_names(samples: Sequence[Sample]) -> None:
    """Outputs are named after image stems: two images with one stem (or a reserved row name) are an error."""
    stems: dict[str, Path] = {}
    for sample in samples:
        if sample.image.stem in stems or sample.image.stem in ("mean", "all"):
            other = stems.get(sample.image.stem, "a reserved table row name")
            raise UserInputError(f"{sample.image}: same output name '{sample.image.stem}' as {other}; rename one")
        stems[sample.image.stem] = sample.image


def spec_from_info(info: dict) -> DatasetSpec:
    return DatasetSpec(
        info.get("dataset", "folder"), tuple(info["class_values"]), tuple(info["class_names"]),
        info.get("label_mode", "values"),
    )


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files, folders (their image files) and globs -> sorted unique image paths."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and is_image_file(q) and not q.name.startswith("."))
            if not found:
                raise UserInputError(f"{p}: folder holds no image files")
            paths += found
        elif p.is_file():
            paths.append(p)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(q) for q in glob.glob(item) if Path(q).is_file())
            if not found:
                raise UserInputError(f"{item}: no files match this pattern")
            paths += found
        else:
            raise UserInputError(f"{p}: no such file or folder")
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise UserInputError("no input images given")
    return unique


def default_inputs(info: dict) -> list[Sample]:
    """The held-out images of training (--holdout), else the dataset's test split."""
    if info.get("test_images"):
        return [Sample(Path(image), tuple(Path(p) for p in labels)) for image, *labels in info["test_images"]]
    data_dir = info.get("data_dir")
    if not data_dir:
        raise UserInputError("this model does not record its dataset folder: give --input")
    try:
        return list_samples(info["dataset"], data_dir, "test")
    except UserInputError as exc:
        raise UserInputError(f"no default input ({exc}); give --input") from None


def find_label(image: Path, labels_dir: Path) -> Path | None:
    """The ground-truth file for ``image`` in ``labels_dir``: same stem, a mask suffix, or label_ for raw_."""
    stem = image.stem
    keys = {stem}
    if stem.startswith("raw_"):
        keys.add("label_" + stem[4:])
    for candidate in sorted(labels_dir.iterdir()):
        if candidate.is_file() and is_image_file(candidate) and candidate != image:
            if candidate.stem in keys or mask_key(candidate.stem) == stem:
                return candidate
    return None


def label_ids(path: Path, spec: DatasetSpec) -> np.ndarray:
    label = read_label(path)
    if spec.label_mode == "values":
        return values_to_ids(label, spec.class_values, path)
    return (label > 0).astype(np.uint8)


def overlay_image(image: np.ndarray, ids: np.ndarray, class_names: Sequence[str], alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (H, W, 3): gray image with classes 1.. coloured, and a legend box."""
    import cv2

    gray = np.clip(percentile_normalize(image, 1, 99.5), 0, 1)
    rgb = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=-1)
    colours = np.array([(0, 0, 0)] + [PALETTE[(c - 1) % len(PALETTE)] for c in range(1, len(class_names))], np.float32)
    fg = ids > 0
    rgb[fg] = ((1 - alpha) * rgb[fg] + alpha * colours[ids[fg]]).astype(np.uint8)
    scale = max(0.4, min(rgb.shape[:2]) / 1000)
    pad, line = int(8 * scale), int(22 * scale)
    width = int(12 * scale * max(len(n) for n in class_names[1:])) + 3 * pad + line
    height = pad + line * (len(class_names) - 1) + pad
    cv2.rectangle(rgb, (0, 0), (min(width, rgb.shape[1] - 1), min(height, rgb.shape[0] - 1)), (255, 255, 255), -1)
    for c in range(1, len(class_names)):
        y = pad + (c - 1) * line
        cv2.rectangle(rgb, (pad, y + 2), (pad + line - 6, y + line - 4), tuple(int(v) for v in colours[c]), -1)
        cv2.putText(rgb, class_names[c], (2 * pad + line - 6, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, (0, 0, 0), max(1, int(scale)), cv2.LINE_AA)
    return rgb


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), rgb[..., ::-1]):
            raise UserInputError(f"{path}: could not write the overlay")


def segment_images(
    model,
    info: dict,
    samples: Sequence[Sample],
    out_dir: Path,
    options: PredictOptions = PredictOptions(),
    log: Callable[[str], None] = print,
) -> dict:
    """Predict every sample, write its outputs, evaluate where labels exist.

    Returns a dict with the per-run tables and the names of failed images. An
    image that cannot be read is reported by name and skipped.
    """
    from .evaluation import Evaluator, write_csv
    from .inference import ProgressBar, make_predict_fn, predict_tiled, probabilities_to_ids
    from .morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, measure_objects, summarize_objects

    spec = spec_from_info(info)
    norm = info.get("normalize", {})
    divisor = int(info.get("size_divisor", 16))
    if options.tile % divisor:
        raise UserInputError(f"--tile {options.tile}: must be a multiple of {divisor} for this model")
    if not 0 <= options.overlap < options.tile:
        raise UserInputError(f"--overlap {options.overlap}: must be at least 0 and smaller than --tile {options.tile}")
    check_output_names(samples)
    # Check every label file before spending minutes on prediction.
    for sample in samples:
        if sample.labels:
            label_ids(sample.labels[0], spec)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    predict_fn = make_predict_fn(model)
    evaluator = Evaluator(spec.class_names)
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
        normalized = percentile_normalize(image, norm.get("pmin", 2.0), norm.get("pmax", 98.0), clip=norm.get("clip", False))
        bar = ProgressBar(f"image {index}/{len(samples)} {name}")
        prob = predict_tiled(
            predict_fn, normalized, tile=options.tile, overlap=options.overlap, batch_size=options.batch_size,
            size_divisor=divisor, tta=options.tta, progress=bar,
        )
        bar.close()
        ids = probabilities_to_ids(prob, options.threshold)
        write_mask(out_dir / f"{name}_mask.tif", ids_to_values(ids, spec.class_values))
        if options.overlay:
            _write_png(out_dir / f"{name}_overlay.png", overlay_image(image, ids, spec.class_names))
        if options.save_probabilities:
            bands = np.concatenate([1 - prob, prob], axis=-1) if prob.shape[-1] == 1 else prob
            write_tiff(out_dir / f"{name}_prob.tif", np.moveaxis(bands, -1, 0).astype(np.float32))
        if sample.labels:
            truth = label_ids(sample.labels[0], spec)
            if truth.shape != ids.shape:
                log(f"error: {sample.labels[0]}: label size {truth.shape[1]}x{truth.shape[0]} differs from image "
                    f"{ids.shape[1]}x{ids.shape[0]} (not evaluated)")
                failed.append(str(sample.labels[0]))
            else:
                evaluator.add(name, truth, ids)
        objects += measure_objects(
            ids, spec.class_names, image_name=name, pixel_size=options.pixel_size, min_size=options.min_size
        )
        done.append(name)
    wall = time.perf_counter() - t0

    tag = shard_suffix(*options.shard)
    if done:
        write_csv(out_dir / f"objects{tag}.csv", objects, OBJECT_COLUMNS)
        write_csv(
            out_dir / f"objects_summary{tag}.csv",
            summarize_objects(objects, spec.class_names, done, pixel_size=options.pixel_size),
            SUMMARY_COLUMNS,
        )
    metrics_rows = []
    if evaluator.rows():
        metrics_rows = evaluator.rows()
        evaluator.write_csv(out_dir / f"metrics{tag}.csv")
        log(evaluator.format_table())
    log(f"{len(done)} image(s) segmented in {wall:.1f} s; outputs in {out_dir}")
    return {"done": done, "failed": failed, "metrics": metrics_rows, "objects": len(objects), "wall_seconds": wall}


def samples_for(inputs: Sequence[str] | None, labels_dir: str | None, info: dict) -> list[Sample]:
    """Samples to segment: --input paths (labels from --labels) or the dataset's test split."""
    if inputs:
        paths = expand_inputs(inputs)
        samples = [Sample(p) for p in paths]
    else:
        samples = default_inputs(info)
    if labels_dir:
        folder = Path(labels_dir)
        if not folder.is_dir():
            raise UserInputError(f"{folder}: no such labels folder")
        samples = [Sample(s.image, (lab,) if (lab := find_label(s.image, folder)) else ()) for s in samples]
        missing = [s.image.name for s in samples if not s.labels]
        if missing:
            print(f"note: no label in {folder} for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                  file=sys.stderr)
    return samples
