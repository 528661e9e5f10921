"""The web app's work without Streamlit: find models, read uploads, segment, build the downloads.

Everything here calls the same functions as ``predict.py``
(:func:`unet_tf.prediction.image.predict_image`, :func:`unet_tf.prediction.image.write_outputs`,
:func:`unet_tf.io.tables.write_csv`, :class:`unet_tf.evaluation.semantic.Evaluator`), so
the files the page offers are byte-for-byte the files ``predict.py`` writes
for the same model, image and options. Uploads are saved under their own
name in a temporary folder and read by :func:`unet_tf.io.images.read_image`; error
messages name the uploaded file, not the temporary path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.models.bundled import CARD_SUFFIX, bundled_files, card_summary
from unet_tf.models.file import INFO_LAYER, ModelInfo

PREVIEW_SIDE = 1024  # longest side of the images shown in the page, in px
ZIP_TIME = (2000, 1, 1, 0, 0, 0)  # fixed entry time: the same files give the same zip bytes


# === Models ===


@dataclass(frozen=True)
class ModelEntry:
    """A ``best.keras`` found under the runs folder, or a bundled model, described without loading TensorFlow.

    Attributes:
        path: the model file.
        run: its run folder, relative to the runs folder; a bundled model's name.
        dataset: the dataset it was trained on ("?" when unreadable).
        class_names: its classes (empty when unreadable).
        dice: best validation Dice from the run's ``summary.json``, or None.
        summary: a bundled model's one-line summary (the first line of its card); None for a run's model.
    """

    path: Path
    run: str
    dataset: str
    class_names: tuple[str, ...]
    dice: float | None
    summary: str | None = None

    def label(self) -> str:
        if self.summary is not None:
            return f"{self.run} (bundled) · {self.dataset} · {len(self.class_names)} classes · {self.summary}"
        dice = "Dice n/a" if self.dice is None else f"val. Dice {self.dice:.3f}"
        return f"{self.run} · {self.dataset} · {len(self.class_names)} classes · {dice}"


def peek_info(path: str | Path) -> ModelInfo:
    """The ModelInfo stored in a ``.keras`` archive, read from its ``config.json`` (no TensorFlow).

    Raises UserInputError naming the file when it holds no unet_tf info.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        layers = config["config"]["layers"]
        info = next(layer["config"]["info"] for layer in layers if layer.get("name") == INFO_LAYER)
    except (OSError, KeyError, ValueError, TypeError, StopIteration, zipfile.BadZipFile):
        raise UserInputError(f"{path}: not a model written by unet_tf") from None
    return ModelInfo.from_dict(info)


def best_dice(run_dir: Path) -> float | None:
    """``summary["best"]["dice"]`` of a run folder's ``summary.json``; None when absent."""
    try:
        value = json.loads((run_dir / "summary.json").read_text())["best"]["dice"]
        return float(value)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _peek_classes(path: Path) -> tuple[str, tuple[str, ...]]:
    """(dataset, class names) of a model file; ("?", ()) when it holds no unet_tf info."""
    try:
        info = peek_info(path)
    except UserInputError:
        return "?", ()
    return info.dataset, tuple(info.class_names)


def run_models(runs_dir: str | Path) -> list[ModelEntry]:
    """Every ``best.keras`` under ``runs_dir`` (sorted by path); empty when the folder is missing."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    entries = []
    for path in sorted(root.rglob("best.keras")):
        run = str(path.parent.relative_to(root)) if path.parent != root else root.name
        entries.append(ModelEntry(path, run, *_peek_classes(path), best_dice(path.parent)))
    return entries


def bundled_entries(bundle_root: str | Path | None = None) -> list[ModelEntry]:
    """The models bundled with the package (by name), with their cards' summaries.

    Args:
        bundle_root: str, Path or None. The folder of bundled models; None: the
            package's own (:data:`unet_tf.models.bundled.DEFAULT_ROOT`).
    """
    return [
        ModelEntry(path, name, *_peek_classes(path), None, card_summary(path.with_suffix(CARD_SUFFIX)))
        for name, path in bundled_files(bundle_root).items()
    ]


def find_models(runs_dir: str | Path, bundle_root: str | Path | None = None) -> list[ModelEntry]:
    """The page's model list: every ``best.keras`` under ``runs_dir`` (sorted by path), then the bundled models.

    Args:
        runs_dir: str or Path. The runs folder (missing: no run models).
        bundle_root: str, Path or None. The folder of bundled models; None: the package's own.
    """
    return run_models(runs_dir) + bundled_entries(bundle_root)


def digest(data: bytes) -> str:
    """Short SHA-256 hex digest of bytes (cache keys of uploads)."""
    return hashlib.sha256(data).hexdigest()[:16]


def saved_upload(name: str, data: bytes, folder: str | Path | None = None) -> Path:
    """Save an uploaded model under ``<tmp>/unet_tf_app/<digest>/<name>`` (kept: the cache key)."""
    base = Path(folder) if folder else Path(tempfile.gettempdir()) / "unet_tf_app"
    path = base / digest(data) / Path(name).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def load_uploaded_model(name: str, data: bytes, folder: str | Path | None = None) -> tuple[Any, ModelInfo]:
    """Load an uploaded ``.keras`` file; errors name the upload, not the temporary path."""
    from unet_tf.models.file import load_model_and_info

    path = saved_upload(name, data, folder)
    with upload_errors(path.parent, name):
        return load_model_and_info(path, precision=PredictConfig().precision)  # as predict.py


# === Uploads ===


@contextlib.contextmanager
def upload_errors(folder: Path, name: str) -> Iterator[None]:
    """Re-raise a UserInputError with ``folder``'s path replaced by the upload's name."""
    try:
        yield
    except UserInputError as exc:
        message = str(exc).replace(str(folder / Path(name).name), name).replace(f"{folder}/", "")
        raise UserInputError(message) from None


@contextlib.contextmanager
def as_file(name: str, data: bytes) -> Iterator[Path]:
    """The uploaded bytes as a temporary file called ``name`` (its suffix picks the reader)."""
    with tempfile.TemporaryDirectory(prefix="unet_tf_app_") as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        with upload_errors(Path(folder), name):
            yield path


def read_upload(name: str, data: bytes) -> np.ndarray:
    """An uploaded image as predict.py reads it: (H, W) in the file's own dtype, full resolution."""
    from unet_tf.io.images import read_image

    with as_file(name, data) as path:
        return read_image(path)


def read_upload_label(name: str, data: bytes, info: ModelInfo, shape: tuple[int, int]) -> np.ndarray:
    """An uploaded label as predict.py reads it: (H, W) uint8 class ids of ``info``'s classes.

    Unknown label values, or a size other than the image's ``shape`` (H, W),
    raise UserInputError naming the upload.
    """
    from unet_tf.data.labels import read_class_ids
    from unet_tf.data.layouts import Sample

    with as_file(name, data) as path:
        truth = read_class_ids(Sample(path, (path,)), info.spec)
        if truth.shape != tuple(shape):
            raise UserInputError(
                f"{path}: label size {truth.shape[1]}x{truth.shape[0]} differs from the image's {shape[1]}x{shape[0]}"
            )
        return truth


def pair_labels(image_names: Sequence[str], label_names: Sequence[str]) -> dict[str, str]:
    """image name -> label name, matched as predict.py's ``--labels`` matches files.

    One image and one label are paired whatever their names.
    """
    from unet_tf.prediction.inputs import find_label

    if len(image_names) == 1 and len(label_names) == 1:
        return {image_names[0]: label_names[0]}
    with tempfile.TemporaryDirectory() as folder:
        for name in label_names:
            (Path(folder) / Path(name).name).touch()
        pairs = {image: find_label(Path(image), Path(folder)) for image in image_names}
    return {image: label.name for image, label in pairs.items() if label is not None}


# === Prediction and its files ===


def predict_config(**options: Any) -> PredictConfig:
    """PredictConfig with predict.py's defaults, writing overlay and probabilities like ``--save-probabilities``."""
    return PredictConfig(**{"save_probabilities": True, "overlay": True, **options})


def image_files(name: str, image: np.ndarray, result: Any, info: ModelInfo, config: PredictConfig) -> dict[str, bytes]:
    """``<name>_mask.tif``, ``_overlay.png``, ``_prob.tif`` (and ``_instances.tif``): predict.py's writer, as bytes."""
    from unet_tf.prediction.outputs import write_outputs

    with tempfile.TemporaryDirectory(prefix="unet_tf_app_") as folder:
        write_outputs(Path(folder), name, image, result, info, config, config.pixel_size)
        return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def table_files(
    objects: Sequence[Mapping[str, Any]], names: Sequence[str], evaluator: Any, info: ModelInfo, config: PredictConfig
) -> dict[str, bytes]:
    """``objects.csv``, ``objects_summary.csv`` and (with scores) ``metrics.csv`` as predict.py writes them."""
    from unet_tf.io.tables import write_csv
    from unet_tf.objects.morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, summarize_objects

    with tempfile.TemporaryDirectory(prefix="unet_tf_app_") as folder:
        out = Path(folder)
        write_csv(out / "objects.csv", objects, OBJECT_COLUMNS)
        summary = summarize_objects(objects, info.class_names, names, pixel_size=config.pixel_size)
        write_csv(out / "objects_summary.csv", summary, SUMMARY_COLUMNS)
        if evaluator is not None and len(evaluator):
            evaluator.write_csv(out / "metrics.csv")
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip of ``files`` (name -> bytes) with fixed entry times (same input, same bytes).

    Tables are deflated; TIFF and PNG files, compressed already, are stored.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            packed = Path(name).suffix.lower() in (".tif", ".tiff", ".png")
            archive.writestr(
                zipfile.ZipInfo(name, ZIP_TIME), data, zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED
            )
    return buffer.getvalue()


# === What the page shows ===


def class_areas(ids: np.ndarray, info: ModelInfo, pixel_size: float | None = None) -> list[dict[str, Any]]:
    """Per class: label value, pixel count, % of the image and (with ``pixel_size`` in µm) area in µm²."""
    counts = np.bincount(ids.ravel(), minlength=info.n_classes)[: info.n_classes]
    total = max(int(ids.size), 1)
    return [
        {
            "class": name,
            "value": int(value),
            "pixels": int(n),
            "percent": 100.0 * int(n) / total,
            "area_um2": None if pixel_size is None else int(n) * pixel_size**2,
        }
        for name, value, n in zip(info.class_names, info.class_values, counts)
    ]


def preview_step(shape: Sequence[int], max_side: int = PREVIEW_SIDE) -> int:
    """Subsampling step that brings the longest side of ``shape`` to at most ``max_side``."""
    return max(1, math.ceil(max(shape[:2]) / max_side))


def gray_preview(image: np.ndarray, step: int) -> np.ndarray:
    """uint8 (h, w) display version of an image: every ``step``-th pixel, stretched as the overlay is."""
    from unet_tf.data.normalize import percentile_normalize

    small = image[::step, ::step]
    return (np.clip(percentile_normalize(small, 1, 99.5), 0, 1) * 255).astype(np.uint8)


def overlay_preview(
    image: np.ndarray, ids: np.ndarray, class_names: Sequence[str], opacity: float, step: int
) -> np.ndarray:
    """RGB uint8 (h, w, 3): classes 1.. in the overlay's colours over the subsampled image at ``opacity``.

    The blend of :func:`unet_tf.prediction.outputs.overlay_image` without its legend box
    (the page draws the legend beside it); the downloaded PNG is predict.py's.
    """
    from unet_tf.prediction.outputs import PALETTE

    gray = gray_preview(image, step)
    small = ids[::step, ::step]
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    colours = np.array([(0, 0, 0)] + [PALETTE[(c - 1) % len(PALETTE)] for c in range(1, len(class_names))], np.float32)
    fg = small > 0
    rgb[fg] = ((1 - opacity) * rgb[fg] + opacity * colours[small[fg]]).astype(np.uint8)
    return rgb


def legend(class_names: Sequence[str]) -> list[tuple[str, str]]:
    """(class name, ``#rrggbb``) of each foreground class, in the overlay's colours."""
    from unet_tf.prediction.outputs import PALETTE

    return [
        (name, "#{:02x}{:02x}{:02x}".format(*PALETTE[(c - 1) % len(PALETTE)]))
        for c, name in enumerate(class_names)
        if c > 0
    ]


def _area_text(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def area_histogram(objects: Sequence[Mapping[str, Any]], bins: int = 20) -> list[dict[str, Any]]:
    """Rows ``{"area (px)": "lo–hi", <class>: count, ...}`` of object areas, one column per class.

    Bins are equally wide, or equally wide in log(area) when the areas span
    more than a factor of 100 (specks beside large objects).
    """
    if not objects:
        return []
    areas = np.array([o["area_px"] for o in objects], dtype=np.float64)
    lo, hi = areas.min(), areas.max()
    n = int(min(bins, max(1, len(np.unique(areas)))))
    edges = np.geomspace(lo, hi, n + 1) if hi > 100 * lo else np.linspace(lo, hi, n + 1)
    if hi == lo:
        edges = np.array([lo - 0.5, hi + 0.5])
    rows = [{"area (px)": f"{_area_text(a)}–{_area_text(b)}"} for a, b in itertools.pairwise(edges)]
    for name in dict.fromkeys(o["class"] for o in objects):
        counts, _ = np.histogram([o["area_px"] for o in objects if o["class"] == name], bins=edges)
        for row, count in zip(rows, counts):
            row[name] = int(count)
    return rows
