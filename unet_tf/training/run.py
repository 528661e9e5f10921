"""Train one model and keep its run folder: best.keras, last.keras, config, history, plots.

:func:`train` is the one entry point used by ``train.py``, the ablation grid,
notebooks and the tests. It reads as the phases of a run (nnU-Net's
``run_training`` is the model)::

    resolve data -> load arrays -> class balance -> model info -> compile
    -> callbacks -> fit (unet_tf.training.fit.fit) -> run folder

Each phase is a short function below, usable on its own.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from unet_tf import __version__
from unet_tf.config import RunConfig, steps_per_pass
from unet_tf.data.labels import load_pairs, read_border_weights, read_instances, with_marker_margin
from unet_tf.data.layouts import DatasetSpec
from unet_tf.data.pipeline import make_dataset
from unet_tf.data.sampling import class_counts, rare_classes_from_counts
from unet_tf.data.splits import TrainingData, resolve_data
from unet_tf.data.targets import IGNORE_ID, format_ignore_stats, ignore_stats, min_object_size, object_areas
from unet_tf.errors import UserInputError, quiet_run
from unet_tf.io.tables import score_column
from unet_tf.models.build import build_model, check_input_size, resolved_depth
from unet_tf.models.file import ModelInfo, attach_info
from unet_tf.runtime import onednn_note
from unet_tf.training.callbacks import AtomicModelCheckpoint, TimeLimit, make_callbacks
from unet_tf.training.distribute import WorkerInfo, cluster_note, is_default, make_strategy, strategy_scope, worker_info
from unet_tf.training.finetune import finetune_config, init_from
from unet_tf.training.fit import fit
from unet_tf.training.losses import class_weights_from_fractions, make_loss, pos_weight_from_fraction
from unet_tf.training.metrics import DiceScore, IoUScore, PixelAccuracy
from unet_tf.training.precision import dtype_policy, precision_reason, resolve_precision
from unet_tf.training.run_folder import default_run_dir, prepare_run_dir, write_config, write_summary

Log = Callable[[str], None]


# === Phases ===


@dataclass(frozen=True)
class Arrays:
    """Normalized images (float32), class-id masks (uint8, ``IGNORE_ID`` where ignored) and, for an
    instance target with border weights, the weight maps (float32) of both sides of a run."""

    train_images: list[np.ndarray]
    train_masks: list[np.ndarray]
    val_images: list[np.ndarray]
    val_masks: list[np.ndarray]
    train_weights: list[np.ndarray] | None = None
    val_weights: list[np.ndarray] | None = None


@dataclass(frozen=True)
class Balance:
    """Class statistics of the training masks and the loss weights they give."""

    fractions: np.ndarray
    rare: tuple[int, ...]
    pos_weight: float | None
    class_weights: tuple[float, ...] | None


def load_arrays(data: TrainingData, cfg: RunConfig, log: Log) -> Arrays:
    """Read and normalize every training and validation image (one label reader for all layouts)."""
    norm, d = cfg.data.normalize, cfg.data
    where = f" from {data.data_dir}" if data.data_dir else " (arrays)"
    log(f"reading {len(data.train)} training and {len(data.val)} validation images{where}")
    spec = with_marker_margin(data.spec, (*data.train, *data.val))  # one ignore margin for every frame
    if spec.ignore_margin != data.spec.ignore_margin:
        log(f"unannotated nuclei: ignored within {spec.ignore_margin:.2f} px of their markers (set-wide margin)")
    train = load_pairs(data.train, spec, norm.pmin, norm.pmax, norm.clip)
    val = load_pairs(data.val, spec, norm.pmin, norm.pmax, norm.clip)
    weights = (None, None)
    if data.spec.target == "instances" and d.border_weight > 0:
        weights = tuple(
            [read_border_weights(s, data.spec, d.border_weight, d.border_sigma) for s in side]
            for side in (data.train, data.val)
        )
        log(f"separation-border weights: w0 {d.border_weight:g}, sigma {d.border_sigma:g} px")
    ignored = [m == IGNORE_ID for m in train[1] + val[1]]
    if any(np.any(i) for i in ignored):
        log(f"annotation: {format_ignore_stats(ignore_stats(ignored))}")
    return Arrays(*train, *val, *weights)


def class_balance(masks: Sequence[np.ndarray], spec: DatasetSpec, log: Log) -> Balance:
    """Pixel fractions per class -> positive weight (binary) or class weights; rare classes to oversample."""
    counts = class_counts(masks, spec.n_classes)
    fractions = counts / max(1, counts.sum())
    missing = [spec.class_names[c] for c in range(spec.n_classes) if fractions[c] == 0]
    if missing:
        log(f"warning: no training pixels of class {', '.join(missing)}: the model cannot learn it")
    binary = spec.n_classes == 2
    return Balance(
        fractions=fractions,
        rare=tuple(rare_classes_from_counts(counts)),
        pos_weight=pos_weight_from_fraction(fractions[1]) if binary else None,
        class_weights=None if binary else class_weights_from_fractions(fractions),
    )


def model_info_for(cfg: RunConfig, data: TrainingData) -> ModelInfo:
    """The :class:`ModelInfo` that travels inside the run's model files.

    An instance model also carries the smallest object worth reporting, learned from its training objects.
    """
    spec = data.spec
    min_size = None
    if spec.target == "instances":
        min_size = min_object_size(object_areas(read_instances(s, spec) for s in (*data.train, *data.val)))
    return ModelInfo(
        class_values=tuple(spec.class_values),
        class_names=tuple(spec.class_names),
        normalize=cfg.data.normalize,
        patch_size=cfg.data.patch_size,
        size_divisor=2 ** resolved_depth(cfg.model),
        dataset=spec.name,
        label_mode=spec.label_mode,
        target=spec.target,
        boundary_width=spec.boundary_width,
        ignore_value=spec.ignore_value,
        min_size=min_size,
        data_dir=str(data.data_dir.resolve()) if data.data_dir else None,
        test_images=tuple((str(s.image.resolve()), *(str(p.resolve()) for p in s.labels)) for s in data.test),
        model=cfg.model,
        unet_tf_version=__version__,
    )


def build_metrics(spec: DatasetSpec) -> list:
    """Dice (monitored as ``val_dice``), per-class Dice, IoU and pixel accuracy."""
    metrics = [DiceScore(spec.n_classes, name="dice"), IoUScore(spec.n_classes, name="iou")]
    if spec.n_classes > 2:
        metrics += [
            DiceScore(spec.n_classes, class_id=c, name=score_column("dice", spec.class_names[c]))
            for c in range(1, spec.n_classes)
        ]
    metrics.append(PixelAccuracy(spec.n_classes, name="pixel_accuracy"))
    return metrics


def compile_model(cfg: RunConfig, info: ModelInfo, spec: DatasetSpec, balance: Balance) -> keras.Model:
    """Build the network with its info layer and compile it (call inside the strategy's scope)."""
    model = attach_info(build_model(cfg.model, spec.n_classes), info)
    t = cfg.train
    loss = make_loss(
        t.loss,
        spec.n_classes,
        alpha=t.tversky_alpha,
        beta=t.tversky_beta,
        pos_weight=balance.pos_weight,
        class_weights=balance.class_weights,
    )
    # the learning rate is used as given, whatever the number of replicas
    model.compile(optimizer=keras.optimizers.Adam(t.lr), loss=loss, metrics=build_metrics(spec))
    return model


def choose_monitor(val_masks: Sequence[np.ndarray], log: Log) -> tuple[str, str]:
    """(metric, mode) that picks ``best.keras``: validation Dice, or validation loss when Dice is undefined.

    With no foreground pixel in any validation mask, Dice is NaN whenever the
    model predicts no foreground (and 0 otherwise), so no epoch would ever be
    "best" and best.keras would never be written: monitor the loss instead.
    """
    if any(np.any((m > 0) & (m != IGNORE_ID)) for m in val_masks):
        return "val_dice", "max"
    log(
        "note: the validation images hold no foreground, so validation Dice is undefined: best.keras and early "
        "stopping follow the validation loss instead"
    )
    return "val_loss", "min"


def patch_datasets(cfg: RunConfig, arrays: Arrays, spec: DatasetSpec, balance: Balance):
    """``(train(shard), val(shard))``: tf.data pipelines of one replica's batches for worker shard ``(i, n)``."""
    d, batch = cfg.data, cfg.train.batch_size
    rare = list(balance.rare)

    def train_dataset(shard: tuple[int, int] = (0, 1)):
        return make_dataset(
            arrays.train_images,
            arrays.train_masks,
            spec.n_classes,
            training=True,
            patch_size=d.patch_size,
            batch_size=batch,
            patches_per_image=d.patches_per_image,
            augment=d.augment,
            oversample_rare=d.oversample_rare if rare else 0.0,
            rare_classes=rare or None,
            seed=cfg.train.seed,
            shard=shard,
            weights=arrays.train_weights,
        )

    def val_dataset(shard: tuple[int, int] = (0, 1)):
        return make_dataset(
            arrays.val_images,
            arrays.val_masks,
            spec.n_classes,
            training=False,
            patch_size=d.patch_size,
            batch_size=batch,
            shard=shard,
            weights=arrays.val_weights,
        )

    return train_dataset, val_dataset


# === The run ===


@quiet_run()  # notes said once per run, TensorFlow's native log lines hidden (e.g. at the first epoch)
def train(
    cfg: RunConfig,
    data: TrainingData | None = None,
    log: Log = print,
    verbose: int | str = "auto",
    extra_callbacks: Sequence = (),
) -> dict:
    """Train one model; returns the summary dict also written to ``summary.json``.

    Args:
        cfg: RunConfig. Every setting (see :func:`unet_tf.load_config`).
        data: TrainingData or None. Explicit samples or arrays
            (:meth:`TrainingData.from_arrays`); None resolves ``cfg.data``'s
            dataset layout (files, subset, validation split, hold-out).
        log: callable taking one line of text. Default ``print``.
        verbose: Keras progress ("auto", 0, 1, 2). Default "auto".
        extra_callbacks: more Keras callbacks.

    ``cfg.train.strategy`` picks the ``tf.distribute`` strategy
    (:mod:`unet_tf.training.distribute`); it is created before anything else touches
    TensorFlow. Under ``multiworker`` every worker calls this; only the chief
    writes the run folder, the others write to a scratch folder that is removed.

    Example:
        >>> cfg = unet_tf.load_config(None, epochs=1, steps_per_epoch=2, base_filters=4,
        ...                           patch_size=64, out="runs/demo")  # doctest: +SKIP
        >>> unet_tf.train(cfg)["run_dir"]  # doctest: +SKIP
        'runs/demo'
    """
    strategy = make_strategy(cfg.train.strategy)  # first: before any other TensorFlow op
    note = cluster_note(cfg.train.strategy)
    if note:
        log(note)
    worker = worker_info() if cfg.train.strategy == "multiworker" else None
    if worker is None or worker.is_chief:
        return _train(cfg, data, log, verbose, extra_callbacks, strategy, worker)
    with tempfile.TemporaryDirectory(prefix=f"unet_tf-worker{worker.index}-") as scratch:
        return _train(cfg, data, log, 0, extra_callbacks, strategy, worker, Path(scratch))


def _layout(cfg: RunConfig, strategy, worker: WorkerInfo | None) -> dict | None:
    """How the run is spread over replicas and workers (None on one device)."""
    if is_default(strategy):
        return None
    replicas = strategy.num_replicas_in_sync
    return {
        "strategy": cfg.train.strategy,
        "replicas": replicas,
        "global_batch_size": cfg.train.batch_size * replicas,
        "workers": worker.count if worker else 1,
    }


def _train(cfg, data, log, verbose, extra_callbacks, strategy, worker, scratch: Path | None = None) -> dict:
    """The phases of :func:`train`; ``scratch``: the run folder of a worker other than the chief."""
    cfg = finetune_config(cfg, is_default(strategy), log)
    check_input_size(cfg.data.patch_size, resolved_depth(cfg.model), "--patch-size")
    data = data or resolve_data(cfg, log)
    out_dir = Path(cfg.train.out) if cfg.train.out else default_run_dir(cfg)
    run_dir = scratch or out_dir
    prepare_run_dir(run_dir, cfg.train.resume)
    arrays = load_arrays(data, cfg, log)
    n_patches = len(arrays.train_images) * cfg.data.patches_per_image
    if worker and n_patches < worker.count:
        raise UserInputError(
            f"{n_patches} training patches per epoch are fewer than the {worker.count} workers: "
            "raise --patches-per-image"
        )
    balance = class_balance(arrays.train_masks, data.spec, log)
    keras.utils.set_random_seed(cfg.train.seed)
    precision = resolve_precision(cfg.train.precision, gpus=len(tf.config.list_physical_devices("GPU")))
    if precision != cfg.train.precision:
        log(f"precision {precision} (--precision {cfg.train.precision}: {precision_reason(precision)})")
    if note := onednn_note():
        log(note)
    # variables of model, optimizer and metrics live on every replica; layers take the precision's dtype policy
    with strategy_scope(strategy), dtype_policy(precision):
        model = compile_model(cfg, model_info_for(cfg, data), data.spec, balance)
        parent = init_from(model, cfg.train.init_from, log) if cfg.train.init_from else None
    layout = _layout(cfg, strategy, worker)
    one_device = {"replicas": 1, "global_batch_size": cfg.train.batch_size, "workers": 1}
    write_config(run_dir, out_dir, cfg, data, balance, {**(layout or one_device), "parent": parent})
    log(
        f"training {cfg.model.model} (base {cfg.model.base_filters}, {model.count_params():,} parameters) on "
        f"{data.spec.n_classes} classes {list(data.spec.class_names)}; run folder {out_dir}"
        f"{' (written by the chief)' if scratch else ''}"
    )
    batch = layout["global_batch_size"] if layout else cfg.train.batch_size
    steps = cfg.train.steps_per_epoch or steps_per_pass(len(arrays.train_images), cfg.data.patches_per_image, batch)
    t0 = time.perf_counter()
    history = fit(
        strategy,
        model,
        *patch_datasets(cfg, arrays, data.spec, balance),
        epochs=cfg.train.epochs,
        steps_per_epoch=cfg.train.steps_per_epoch,
        pass_steps=steps,
        callbacks=make_callbacks(cfg, run_dir, steps, choose_monitor(arrays.val_masks, log), extra_callbacks),
        verbose=verbose,
        log=log,
    )
    wall = time.perf_counter() - t0
    if any(not math.isfinite(v) for v in history.history.get("loss", [])):
        raise UserInputError("training diverged (NaN loss); try a smaller --lr")
    rate = {
        "epochs": len(history.history.get("loss", [])),
        "steps_per_epoch": steps,
        "batch": batch,
        "precision": precision,
    }
    return write_summary(run_dir, out_dir, model, data, rate, wall, layout)


__all__ = [
    "train",
    "load_arrays",
    "class_balance",
    "model_info_for",
    "compile_model",
    "make_callbacks",
    "patch_datasets",
    "AtomicModelCheckpoint",
    "TimeLimit",
]
