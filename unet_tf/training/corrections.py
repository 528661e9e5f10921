"""Fine-tune a model on corrected segmentations: the human-in-the-loop step, for notebooks, clusters and napari.

A user segments images, fixes the labels (napari's paint and erase tools, or
any editor), and calls :func:`finetune_on_corrections` with the images and the
corrected label images. It is the existing fine-tuning path (``train.init_from``
through :func:`unet_tf.training.run.train`, so the run folder is a normal one)
on the pairs held in memory; the last ``hold_out`` pairs are not trained on but
scored before and after (AP@0.5 and SEG for an instance model, mean foreground
Dice for a semantic one), so the user sees whether the corrections helped.

Labels are what the model predicts: object ids (0 background) for an instance
model, the class label values (``ModelInfo.class_values``, e.g. 0/50/100) for
a semantic one, exactly what ``predict.py`` writes as ``_instances.tif`` /
``_mask.tif``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from unet_tf.config import PredictConfig, RunConfig, replace_config
from unet_tf.data.layouts import ArraySample, DatasetSpec, instance_spec
from unet_tf.data.splits import TrainingData, split_train_val
from unet_tf.errors import UserInputError
from unet_tf.evaluation.matching import InstanceEvaluator
from unet_tf.evaluation.semantic import Evaluator
from unet_tf.models.file import ModelInfo, load_model_and_info, read_info
from unet_tf.prediction.image import predict_image
from unet_tf.training.finetune import parent_file
from unet_tf.training.run import train
from unet_tf.training.run_folder import RunSummary

Log = Callable[[str], None]
CORRECTIONS_DATASET = "corrections"  # ModelInfo.dataset of a model fine-tuned here
MAX_STEPS_PER_EPOCH = 25  # a validation pass (and a best.keras) at least every 25 steps


@dataclasses.dataclass(frozen=True)
class CorrectionRun:
    """What :func:`finetune_on_corrections` gave.

    Attributes:
        model: the fine-tuned Keras model (``best.keras`` of the run, loaded).
        run_dir: Path of the run folder (``best.keras``, ``config.json``, ``history.csv``, ...).
        summary: the run's :class:`~unet_tf.training.run_folder.RunSummary`.
        before, after: scores on the held-aside pairs of the parent and of the fine-tuned model
            (``ap50`` and ``seg`` for an instance model, ``dice`` for a semantic one); empty without held pairs.
        n_train, n_held: pairs trained on and pairs held aside.
    """

    model: Any
    run_dir: Path
    summary: RunSummary
    before: dict[str, float]
    after: dict[str, float]
    n_train: int
    n_held: int


class StopWhen(keras.callbacks.Callback):
    """Stop training at the next step once ``stop()`` is true; report ``progress(done, total)`` each step."""

    def __init__(self, stop: Callable[[], bool] | None, progress: Callable[[int, int], None] | None, total: int):
        super().__init__()
        self.stop, self.progress, self.total, self.done = stop, progress, total, 0
        self.cancelled = False

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
        if self.stop is not None and self.stop():
            self.model.stop_training = self.cancelled = True


def check_pairs(images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs as 2-D arrays of equal shapes; UserInputError naming the pair otherwise (or none given)."""
    if len(images) != len(labels):
        raise UserInputError(f"`images` and `labels`: {len(images)} images but {len(labels)} label images")
    if not images:
        raise UserInputError("`images`: no corrected pairs to fine-tune on (add at least one image and its labels)")
    pairs = []
    for i, (image, label) in enumerate(zip(images, labels)):
        image, label = np.asarray(image), np.asarray(label)
        if image.ndim != 2:
            raise UserInputError(f"`images`[{i}]: expected one gray plane (H, W), received shape {image.shape}")
        if label.shape != image.shape:
            raise UserInputError(f"`labels`[{i}]: shape {label.shape} differs from its image's {image.shape}")
        if label.dtype.kind not in "iub" or (label.size and label.min() < 0):
            raise UserInputError(f"`labels`[{i}]: expected non-negative integer labels, received {label.dtype}")
        pairs.append((image, label))
    return pairs


def corrections_spec(info: ModelInfo, labels: Sequence[np.ndarray]) -> DatasetSpec:
    """The classes the corrected labels hold: object ids for an instance model, else the model's class values."""
    if info.target == "instances":
        base = DatasetSpec(CORRECTIONS_DATASET, (0, 255), ("background", "object"), "instances")
        return instance_spec(base, info.boundary_width)
    allowed = set(info.class_values)
    for i, label in enumerate(labels):
        extra = sorted(set(np.unique(label).tolist()) - allowed)
        if extra:
            raise UserInputError(
                f"`labels`[{i}]: values {extra[:5]} are no class of the model (class values {list(info.class_values)})"
            )
    return DatasetSpec(CORRECTIONS_DATASET, tuple(info.class_values), tuple(info.class_names))


def default_hold_out(n_pairs: int) -> int:
    """Pairs held aside for the before / after score: one from three pairs on, two from eight on."""
    return 0 if n_pairs < 3 else 1 if n_pairs < 8 else 2


MIN_PAIRS_TO_SPLIT = 5  # fewer training pairs are all trained on, and validated on themselves


def split_held(pairs: list, hold_out: int | None) -> tuple[list, list]:
    """(pairs to train on, the last ``hold_out`` pairs held aside; None: :func:`default_hold_out`)."""
    n_held = default_hold_out(len(pairs)) if hold_out is None else int(hold_out)
    if not 0 <= n_held < len(pairs):
        raise UserInputError(f"`hold_out` {hold_out}: must leave at least one of the {len(pairs)} pairs to train on")
    return pairs[: len(pairs) - n_held], pairs[len(pairs) - n_held :]


def training_data(pairs: list, spec: DatasetSpec, seed: int) -> TrainingData:
    """TrainingData of the training pairs: validated on a fifth of them from :data:`MIN_PAIRS_TO_SPLIT` pairs
    on, else on themselves (every corrected pair of a handful is worth training on)."""
    samples = [ArraySample(f"corrected_{i:03d}", image, label) for i, (image, label) in enumerate(pairs)]
    if len(samples) < MIN_PAIRS_TO_SPLIT:
        return TrainingData(spec, tuple(samples), tuple(samples))
    train, val = split_train_val(samples, 0.2, seed)
    return TrainingData(spec, tuple(train), tuple(val or train))


def score(model: Any, pairs: list, info: ModelInfo, config: PredictConfig) -> dict[str, float]:
    """Pooled scores of ``model`` on ``pairs``: ``ap50``, ``seg`` (instances) or mean foreground ``dice``."""
    if not pairs:
        return {}
    if info.target == "instances":
        evaluator = InstanceEvaluator()
        for i, (image, label) in enumerate(pairs):
            evaluator.add(f"held_{i}", label, predict_image(model, image, config).instances)
        pooled = evaluator.rows()[-1]
        return {"ap50": float(pooled["ap50"]), "seg": float(pooled["seg"])}
    lookup = {v: c for c, v in enumerate(info.class_values)}
    semantic = Evaluator(info.class_names)
    for i, (image, label) in enumerate(pairs):
        truth = np.vectorize(lookup.get, otypes=[np.uint8])(label) if label.size else label.astype(np.uint8)
        semantic.add(f"held_{i}", truth, predict_image(model, image, config).ids)
    rows = [r for r in semantic.rows() if r.get("image") == "all" and r["class"] != info.class_names[0]]
    return {"dice": float(np.nanmean([r["dice"] for r in rows]))} if rows else {}


def _parent(model: Any, scratch: Path) -> tuple[Any, ModelInfo, Path]:
    """(model, info, file) of ``model``: a ``.keras`` file, a bundled name, or a loaded Keras model (saved)."""
    if isinstance(model, (str, Path)):
        if Path(model).suffix.lower() == ".onnx":
            raise UserInputError(
                f"`model` {model}: an ONNX export cannot be fine-tuned; give the .keras file it came from"
            )
        path = parent_file(model)
        loaded, info = load_model_and_info(path)
        return loaded, info, path
    if getattr(model, "info", None) is not None and not hasattr(model, "get_layer"):
        raise UserInputError("`model`: an ONNX model cannot be fine-tuned; give the .keras file it came from")
    info = read_info(model)
    path = scratch / "parent.keras"
    model.save(path)
    return model, info, path


def corrections_config(info: ModelInfo, parent: Path, out: Path | None, steps: int, **train: Any) -> RunConfig:
    """The RunConfig of a fine-tuning run on corrections: the parent's architecture, normalization and patch
    size, ``steps`` optimizer steps in epochs of at most :data:`MAX_STEPS_PER_EPOCH` (no augmentation is
    switched off: a handful of pairs needs it most)."""
    if steps < 1:
        raise UserInputError(f"`steps` {steps}: must be at least 1")
    per_epoch = min(steps, MAX_STEPS_PER_EPOCH)
    patch = train.pop("patch_size", None) or info.patch_size
    cfg = replace_config(
        RunConfig(),
        data={
            "dataset": "folder",
            "instance_masks": info.target == "instances",
            "patch_size": patch,
            "normalize": info.normalize,
            "boundary_width": info.boundary_width,
        },
        train={
            "init_from": str(parent),
            "epochs": math.ceil(steps / per_epoch),
            "steps_per_epoch": per_epoch,
            "out": None if out is None else str(out),
            **{k: v for k, v in train.items() if v is not None},
        },
    )
    return cfg


def finetune_on_corrections(
    model: Any,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    out: str | Path | None = None,
    steps: int = 100,
    max_minutes: float | None = None,
    hold_out: int | None = None,
    batch_size: int = 4,
    patch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    predict: PredictConfig = PredictConfig(),
    log: Log = print,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CorrectionRun:
    """Fine-tune ``model`` on images and their corrected labels; returns the new model, its run folder, scores.

    Args:
        model: a ``.keras`` file written by unet_tf, a bundled model's name (``"nuclei"``), or a loaded
            unet_tf Keras model. An ONNX export cannot be trained (UserInputError).
        images: sequence of (H, W) raw images (one gray plane each, any numeric dtype).
        labels: sequence of (H, W) corrected label images, one per image: object ids (0 background) for an
            instance model, the model's class values for a semantic one (what ``predict_image`` gave, fixed).
        out: the run folder; None: ``runs/folder-<model>-<time>``. A folder holding a finished run is refused.
        steps: optimizer steps (the step budget). Default 100.
        max_minutes: time budget in minutes (checked after each epoch of at most 25 steps); None: none.
        hold_out: the last ``hold_out`` pairs are not trained on but scored before and after; None: one
            pair from three pairs on, two from eight on.
        batch_size, patch_size, lr, seed: ``train.batch_size``, ``data.patch_size`` (None: the model's),
            ``train.lr`` (None: the default), ``train.seed``.
        predict: PredictConfig of the before / after scoring (tile, threshold, min_size, ...).
        log: callable taking one line of text. Default ``print``.
        stop, progress: ``stop()`` true ends training at the next step (cancel); ``progress(done, total)`` steps.

    Returns:
        :class:`CorrectionRun`: the new model (``best.keras``), run folder, summary, before / after scores.

    Example:
        >>> run = finetune_on_corrections("nuclei", [image], [fixed], steps=50, out="runs/fixed")  # doctest: +SKIP
    """
    pairs = check_pairs(images, labels)
    trained, held = split_held(pairs, hold_out)
    with tempfile.TemporaryDirectory(prefix="unet_tf-corrections-") as scratch:
        parent, info, parent_path = _parent(model, Path(scratch))
        data = training_data(trained, corrections_spec(info, [label for _, label in pairs]), seed)
        cfg = corrections_config(
            info, parent_path, None if out is None else Path(out), steps,
            max_minutes=max_minutes, batch_size=batch_size, patch_size=patch_size, lr=lr, seed=seed,
        )  # fmt: skip
        before = score(parent, held, info, predict)
        log(f"before fine-tuning, on {len(held)} held-aside pair(s): {format_scores(before)}")
        total = cfg.train.epochs * cfg.train.steps_per_epoch
        summary = train(cfg, data=data, log=log, verbose=0, extra_callbacks=[StopWhen(stop, progress, total)])
    new_model = load_model_and_info(summary.best_path)[0]
    after = score(new_model, held, info, predict)
    log(f"after fine-tuning: {format_scores(after)} (run folder {summary.run_dir})")
    return CorrectionRun(new_model, summary.run_dir, summary, before, after, len(trained), len(held))


def format_scores(scores: dict[str, float]) -> str:
    """``AP@0.5 0.812, SEG 0.774`` / ``Dice 0.903``; ``no held-aside pairs`` when empty."""
    names = {"ap50": "AP@0.5", "seg": "SEG", "dice": "Dice"}
    return ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in scores.items()) or "no held-aside pairs"
