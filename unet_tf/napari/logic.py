"""What the napari widgets do, as plain functions: no Qt and no napari import, so tests run without a display.

* Models: :func:`model_choices` (bundled names and every ``best.keras`` under a
  runs folder), :func:`open_model` (a ``.keras`` file, a bundled name or a
  ``.onnx`` export, loaded the way ``predict.py`` loads them).
* Segment: :func:`gray_plane` (what the model reads from a layer's data: one
  gray plane; RGB(A) becomes luminance, as ``predict.py`` reads a colour file;
  a stack is refused in one line), :func:`segment` (the one
  :func:`unet_tf.prediction.image.predict_image`, so the labels equal
  ``predict.py``'s ``_instances.tif`` / ``_mask.tif``) and
  :func:`segmentation_layers` (napari layer data tuples).
* Correct and retrain: :func:`add_pair` writes an image and its corrected
  labels into a training folder of the ``folder`` layout (``images/<stem>.tif``
  + ``masks/<stem>.tif``, read by ``train.py`` with instance masks too), never
  replacing a pair unless asked; :func:`read_pairs` reads them back;
  :func:`new_run_dir` names the next fine-tuning run.
* :func:`message` turns any exception into the one line a widget shows.

Nothing here imports TensorFlow at module level: napari's process imports this module, and the model runs in
a child process (:mod:`unet_tf.napari.worker`); :func:`open_model` and :func:`segment` run there.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.io.images import luminance, read_image, read_label
from unet_tf.io.writers import write_mask, write_tiff
from unet_tf.models.bundled import bundled_models
from unet_tf.prediction.outputs import write_instances

METADATA_KEY = "unet_tf"  # a Labels layer's metadata[METADATA_KEY]: model, image layer, settings
RUNS_FOLDER = "runs"  # fine-tuning runs go to <training folder>/runs/finetune-<time>
MODEL_SUFFIXES = (".keras", ".onnx")


def model_choices(runs_folder: str | Path | None = None) -> dict[str, str]:
    """label -> what :func:`open_model` takes: bundled names first, then each ``best.keras`` under
    ``runs_folder`` (newest first, labelled by its path relative to the folder)."""
    choices = {f"{name} (bundled)": name for name in bundled_models()}
    folder = Path(runs_folder) if runs_folder else None
    if folder is not None and folder.is_dir():
        found = sorted(folder.rglob("best.keras"), key=lambda p: p.stat().st_mtime, reverse=True)
        choices.update({str(p.relative_to(folder)): str(p) for p in found})
    return choices


def open_model(name_or_path: str | Path, precision: str = PredictConfig().precision) -> tuple[Any, Any]:
    """(model, ModelInfo) of a ``.keras`` file, a bundled model's name or a ``.onnx`` export (onnxruntime); a
    ``.keras`` model computes in ``precision`` (predict.py's default, so the labels equal its files).

    A file that is neither, or a model unet_tf did not write, is a UserInputError naming it.
    """
    text = str(name_or_path).strip()
    if not text:
        raise UserInputError("`model`: choose a model (a bundled name, a run's best.keras, or a .keras / .onnx file)")
    suffix = Path(text).suffix.lower()
    if suffix == ".onnx":
        from unet_tf.prediction.onnx import load_onnx

        model = load_onnx(text)
        return model, model.info
    if suffix and suffix not in MODEL_SUFFIXES and Path(text).is_file():
        raise UserInputError(f"{text}: not a model file of unet_tf (a .keras file of train.py or a .onnx export)")
    from unet_tf.models.file import load_model_and_info

    return load_model_and_info(text, precision=precision)


def gray_plane(data: Any, rgb: bool = False, name: str = "image") -> np.ndarray:
    """The one gray (H, W) plane a model reads from an image layer's data.

    RGB(A) layers (``rgb``) become luminance, as ``predict.py`` reads a colour
    file. A stack (more than two axes) is refused in one line: the model reads
    one plane, and which plane to segment is the user's choice.
    """
    array = np.asarray(data)
    if rgb and array.ndim == 3 and array.shape[-1] in (3, 4):
        return luminance(array)
    if array.ndim != 2:
        what = f"an RGB layer of shape {array.shape}" if rgb else f"a stack of shape {array.shape}"
        raise UserInputError(
            f"layer '{name}': {what}, but the model reads one gray plane (H, W): "
            "make a layer of the one plane to segment (e.g. Layers > Split Stack)"
        )
    if array.size == 0:
        raise UserInputError(f"layer '{name}': holds no pixels")
    return array


def predict_config(**values: Any) -> PredictConfig:
    """PredictConfig from widget values: ``min_size`` < 0 and ``diameter`` <= 0 mean "not set" (None)."""
    if values.get("min_size") is not None and values["min_size"] < 0:
        values["min_size"] = None
    if values.get("diameter") is not None and values["diameter"] <= 0:
        values["diameter"] = None
    return PredictConfig(**values)


@dataclass(frozen=True)
class Segmentation:
    """What the Segment widget shows: ``labels`` (instances, else the class mask), ``kind`` (``instances`` or
    ``classes``) and the probabilities (H, W, K) float32."""

    labels: np.ndarray
    kind: str
    probabilities: np.ndarray
    scale_factor: float


def segment(
    model: Any, image: np.ndarray, config: PredictConfig, progress: Callable | None = None, name: str = "image"
) -> Segmentation:
    """Segment one gray plane with :func:`unet_tf.prediction.image.predict_image` (what ``predict.py`` calls):
    the instances of an instance model or with ``split_touching`` (``_instances.tif``), else the class mask
    in the training data's label values (``_mask.tif``)."""
    from unet_tf.prediction.image import predict_image
    from unet_tf.prediction.outputs import instance_dtype

    result = predict_image(model, image, config, progress=progress, name=name)
    if result.instances is not None:
        labels = result.instances.astype(instance_dtype(int(result.instances.max(initial=0))))
        return Segmentation(labels, "instances", result.probabilities, result.scale_factor)
    return Segmentation(result.mask, "classes", result.probabilities, result.scale_factor)


def segmentation_layers(
    seg: Segmentation, image_name: str, scale: tuple, meta: dict, probabilities: bool = False
) -> list[tuple]:
    """napari layer data tuples: the Labels layer (``meta`` in its metadata) and, if asked, the probabilities."""
    layers = [
        (seg.labels, {"name": labels_name(image_name), "scale": scale, "metadata": {METADATA_KEY: meta}}, "labels")
    ]
    if probabilities:
        bands = np.moveaxis(seg.probabilities, -1, 0)  # (K, H, W): one slider step per class
        data, band_scale = (bands[0], scale) if len(bands) == 1 else (bands, (1.0, *scale))
        layers.append(
            (data, {"name": f"{image_name} probabilities", "scale": band_scale, "colormap": "magma"}, "image")
        )
    return layers


def labels_name(image_name: str) -> str:
    return f"{image_name} labels"


def layer_meta(model: str, image_name: str, kind: str, config: PredictConfig, pixel_size: float | None) -> dict:
    """What a segmented Labels layer remembers: the model, its image layer, ``instances`` or ``classes``, the
    settings and the pixel size."""
    return {"model": str(model), "image": image_name, "kind": kind, "config": asdict(config), "pixel_size": pixel_size}


def pixel_size_for(path: str | Path | None, scale: Any = None) -> float | None:
    """µm per px of an image layer: its TIFF file's own (what ``predict.py`` reads), else its scale when not 1."""
    if path and Path(path).suffix.lower() in (".tif", ".tiff") and Path(path).is_file():
        from unet_tf.io.metadata import pixel_size_um

        value = pixel_size_um(path)[0]
        if value:
            return float(value)
    if scale is not None and len(scale) and float(scale[-1]) not in (0.0, 1.0):
        return float(scale[-1])
    return None


def config_from_meta(meta: dict) -> PredictConfig:
    values = dict(meta.get("config") or {})
    values["shard"] = tuple(values.get("shard", (0, 1)))
    return PredictConfig(**values)


def check_labels(labels: Any, image: np.ndarray, name: str) -> np.ndarray:
    """The labels of a Labels layer as a 2-D non-negative integer array of the image's shape, else UserInputError."""
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise UserInputError(f"layer '{name}': labels of shape {labels.shape}, but its image is {image.shape}")
    if labels.dtype.kind not in "iub" or (labels.size and labels.min() < 0):
        raise UserInputError(f"layer '{name}': labels must be non-negative integers, not {labels.dtype}")
    return labels


def stem_for(name: str) -> str:
    """A file stem from a layer name: letters, digits, ``-``, ``_`` and ``.`` kept, the rest ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    return stem[:-4] if stem.lower().endswith(".tif") else stem


def pair_paths(folder: str | Path, stem: str) -> tuple[Path, Path]:
    return Path(folder) / "images" / f"{stem}.tif", Path(folder) / "masks" / f"{stem}.tif"


def free_stem(folder: str | Path, stem: str) -> str:
    """``stem``, or ``stem_2``, ``stem_3``, ... : the first whose image and mask are both absent."""
    candidate, n = stem, 1
    while any(p.exists() for p in pair_paths(folder, candidate)):
        n += 1
        candidate = f"{stem}_{n}"
    return candidate


def add_pair(
    folder: str | Path,
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    instances: bool = True,
    pixel_size: float | None = None,
    replace: bool = False,
) -> tuple[Path, Path]:
    """Write an image and its corrected labels into the training folder ``folder`` (``folder`` layout).

    The image keeps its dtype; the labels are an instance TIFF (uint16, :func:`write_instances`) for an instance
    model, else a class mask (:func:`unet_tf.io.writers.write_mask`), both with ``pixel_size``. A pair of the
    same name is replaced only with ``replace``; otherwise the new pair takes the next free name
    (:func:`free_stem`). Returns (image path, mask path).
    """
    stem = stem_for(name)
    stem = stem if replace else free_stem(folder, stem)
    image_path, mask_path = pair_paths(folder, stem)
    try:
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{folder}: cannot write the training folder here ({exc.strerror})") from None
    write_tiff(image_path, image, pixel_size_um=pixel_size)
    if instances:
        write_instances(mask_path, labels, pixel_size)
    else:
        write_mask(mask_path, labels, pixel_size)
    return image_path, mask_path


def read_pairs(folder: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(images, labels, stems) of every pair in the training folder, read as ``train.py`` reads the ``folder``
    layout; a folder without pairs is a UserInputError saying so."""
    from unet_tf.data.layouts import list_samples

    folder = Path(folder) if folder else None
    if folder is None or not (folder / "images").is_dir() or not any((folder / "images").iterdir()):
        raise UserInputError(f"{folder}: no collected pairs yet: add an image and its corrected labels first")
    samples = [s for s in list_samples("folder", folder, "train") if s.labels]
    images = [read_image(s.image) for s in samples]
    labels = [read_label(s.labels[0]) for s in samples]
    return images, labels, [s.image.stem for s in samples]


def new_run_dir(folder: str | Path) -> Path:
    """``<folder>/runs/finetune-<time>`` (a second within the same second gets ``-2``, ...)."""
    base = Path(folder) / RUNS_FOLDER / f"finetune-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{base.name}-{n}")
    return run


class JobError(Exception):
    """A job of the model process failed (or the process died): its one line, as :func:`message` wrote it."""


def message(exc: BaseException) -> str:
    """The one line a widget shows for ``exc``: a UserInputError's own text, else its type and first line."""
    if isinstance(exc, JobError):
        return str(exc)
    if isinstance(exc, UserInputError):
        return f"error: {exc}"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"error: {type(exc).__name__}: {first}" if first else f"error: {type(exc).__name__}"
