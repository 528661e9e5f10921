"""Compile, fit and keep the run folder: best.keras, last.keras, config, history, plots.

:func:`train` is the one entry point used by ``train.py``, the ablation grid and
the tests. It goes files -> arrays -> tf.data -> model.fit -> run folder.
"""
from __future__ import annotations

import json
import math
import re
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import config as cfgmod
from .config import RunConfig
from .datasets import (
    DatasetSpec,
    Sample,
    choose_subset,
    dataset_spec,
    default_data_dir,
    list_samples,
    load_pairs,
    split_holdout,
    split_train_val,
)
from .errors import UserInputError
from .io import atomic_path


@dataclass(frozen=True)
class TrainingData:
    """Resolved inputs of a run: the spec and the labelled samples on each side."""

    spec: DatasetSpec
    data_dir: Path
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...] = ()


def ensure_demo_data(data_dir: Path, log: Callable[[str], None] = print) -> None:
    """Fill an empty or missing ``tem`` folder with the synthetic demo set."""
    train_dir = data_dir / "train"
    if train_dir.is_dir() and any(train_dir.iterdir()):
        return
    from .synthetic import write_tem_dataset

    log(f"{data_dir} holds no images: writing the synthetic TEM demo set there (12 train + 2 test, 1024 px) ...")
    t0 = time.perf_counter()
    write_tem_dataset(data_dir)
    log(f"demo data written to {data_dir} in {time.perf_counter() - t0:.0f} s")


def labelled_pool(
    cfg: RunConfig, log: Callable[[str], None] = print
) -> tuple[Path, DatasetSpec, list[Sample], list[Sample]]:
    """(data folder, classes, labelled training images minus --holdout, the held-out ones)."""
    d = cfg.data
    data_dir = Path(d.data_dir) if d.data_dir else default_data_dir(d.dataset)
    if d.dataset == "tem":
        ensure_demo_data(data_dir, log)
    samples = list_samples(d.dataset, data_dir, "train")
    spec = dataset_spec(d.dataset, d.class_values, d.class_names, samples)
    pool, held = split_holdout(samples, d.holdout)
    return data_dir, spec, pool, held


def resolve_data(cfg: RunConfig, log: Callable[[str], None] = print) -> TrainingData:
    """Find the dataset's files, choose the training subset and the validation split."""
    d = cfg.data
    data_dir, spec, samples, test = labelled_pool(cfg, log)
    subset = choose_subset(samples, d.train_size, cfg.train.seed)
    train, val = split_train_val(subset, d.val_fraction, cfg.train.seed)
    if not val:
        log("note: only one training image (or --val-fraction 0): validating on the training image itself")
        val = train
    return TrainingData(spec, data_dir, tuple(train), tuple(val), tuple(test))



def default_run_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.model}-{stamp}"


def _prepare_run_dir(run_dir: Path, resume: bool) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserInputError(f"{run_dir}: cannot write the run folder here ({exc.strerror})") from None
    if not resume and (run_dir / "best.keras").exists():
        raise UserInputError(f"{run_dir}: already holds a finished run; use --resume or another --out")


def _make_checkpoint_class():
    import keras

    class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
        """ModelCheckpoint that writes to a temporary file and renames it."""

        def _save_model(self, epoch, batch, logs):
            filepath = self._get_file_path(epoch, batch, logs)
            if self._should_save_model(epoch, batch, logs, filepath):
                with atomic_path(filepath) as tmp:
                    self.model.save(tmp)

    return AtomicModelCheckpoint


def _make_time_limit(minutes: float):
    import keras

    class TimeLimit(keras.callbacks.Callback):
        """Stop after the epoch that crosses ``minutes`` of wall time."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.start > minutes * 60:
                self.model.stop_training = True

    return TimeLimit()


def build_metrics(spec: DatasetSpec) -> list:
    """Dice (monitored as ``val_dice``), per-class Dice, IoU and pixel accuracy."""
    from .metrics import DiceScore, IoUScore, PixelAccuracy

    metrics = [DiceScore(spec.n_classes, name="dice"), IoUScore(spec.n_classes, name="iou")]
    if spec.n_classes > 2:
        metrics += [
            DiceScore(spec.n_classes, class_id=c, name="dice_" + re.sub(r"\W+", "_", spec.class_names[c]))
            for c in range(1, spec.n_classes)
        ]
    metrics.append(PixelAccuracy(spec.n_classes, name="pixel_accuracy"))
    return metrics


def plot_curves(history: dict, path: Path) -> None:
    """Loss and Dice per epoch, training and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "dice")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _read_history(path: Path) -> dict[str, list[float]]:
    import csv

    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r.get(k) not in (None, "")] for k in (rows[0] if rows else {})}


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def train(
    cfg: RunConfig,
    data: TrainingData | None = None,
    log: Callable[[str], None] = print,
    verbose: int | str = "auto",
    extra_callbacks: Sequence = (),
) -> dict:
    """Train one model; returns the summary dict also written to ``summary.json``.

    ``data`` overrides the dataset resolution (used by benchmarks and the
    ablation grid to pass explicit samples). ``cfg.train.strategy`` picks the
    ``tf.distribute`` strategy (:mod:`unet_tf.distribute`); it is created before
    anything else touches TensorFlow. Under ``multiworker`` every worker calls
    this; only the chief writes the run folder, the others write to a scratch
    folder that is removed.
    """
    from .distribute import cluster_note, make_strategy, worker_info

    strategy = make_strategy(cfg.train.strategy)  # first: before any other TensorFlow op
    note = cluster_note(cfg.train.strategy)
    if note:
        log(note)
    worker = worker_info() if cfg.train.strategy == "multiworker" else None
    if worker is None or worker.is_chief:
        return _train(cfg, data, log, verbose, extra_callbacks, strategy, worker)
    with tempfile.TemporaryDirectory(prefix=f"unet_tf-worker{worker.index}-") as scratch:
        return _train(cfg, data, log, verbose, extra_callbacks, strategy, worker, Path(scratch))


def _train(cfg, data, log, verbose, extra_callbacks, strategy, worker, scratch: Path | None = None) -> dict:
    """The body of :func:`train`; ``scratch``: the run folder of a worker other than the chief."""
    from .distribute import fit_distributed, global_batch_size, is_default, steps_per_pass, strategy_scope
    from . import __version__
    from .models import build_model, check_input_size, resolved_depth

    check_input_size(cfg.data.patch_size, resolved_depth(cfg.model), "--patch-size")
    data = data or resolve_data(cfg, log)
    out_dir = Path(cfg.train.out) if cfg.train.out else default_run_dir(cfg)
    run_dir = scratch or out_dir
    _prepare_run_dir(run_dir, cfg.train.resume)
    distributed = not is_default(strategy)
    replicas = strategy.num_replicas_in_sync
    batch = global_batch_size(cfg.train.batch_size, replicas)  # patches per optimizer step

    spec = data.spec
    norm = cfg.data.normalize
    log(f"reading {len(data.train)} training and {len(data.val)} validation images from {data.data_dir}")
    train_images, train_masks = load_pairs(data.train, spec, norm.pmin, norm.pmax, norm.clip)
    val_images, val_masks = load_pairs(data.val, spec, norm.pmin, norm.pmax, norm.clip)
    if worker and len(train_images) * cfg.data.patches_per_image < worker.count:
        raise UserInputError(
            f"{len(train_images)} training images x {cfg.data.patches_per_image} patches per image is fewer than "
            f"the {worker.count} workers: raise --patches-per-image"
        )
    from .pipeline import class_counts, make_dataset, rare_classes_from_counts

    counts = class_counts(train_masks, spec.n_classes)
    fractions = counts / max(1, counts.sum())
    missing = [spec.class_names[c] for c in range(spec.n_classes) if fractions[c] == 0]
    if missing:
        log(f"warning: no training pixels of class {', '.join(missing)}: the model cannot learn it")

    import keras
    import tensorflow as tf

    from .losses import class_weights_from_fractions, make_loss, pos_weight_from_fraction
    from .model_file import attach_info

    keras.utils.set_random_seed(cfg.train.seed)
    rare = list(rare_classes_from_counts(counts))

    def train_dataset(batch_size: int, shard: tuple[int, int] = (0, 1)):
        return make_dataset(
            train_images, train_masks, spec.n_classes, training=True,
            patch_size=cfg.data.patch_size, batch_size=batch_size,
            patches_per_image=cfg.data.patches_per_image, augment=cfg.data.augment,
            oversample_rare=cfg.data.oversample_rare if rare else 0.0, rare_classes=rare or None,
            seed=cfg.train.seed, shard=shard,
        )

    def val_dataset(batch_size: int, shard: tuple[int, int] = (0, 1)):
        return make_dataset(
            val_images, val_masks, spec.n_classes, training=False,
            patch_size=cfg.data.patch_size, batch_size=batch_size, shard=shard,
        )

    steps = cfg.train.steps_per_epoch
    if not distributed:
        train_ds = train_dataset(batch)
        val_ds = val_dataset(batch)
        if steps:
            train_ds = train_ds.repeat()

    info = {
        "dataset": spec.name,
        "data_dir": str(data.data_dir.resolve()),
        "class_values": list(spec.class_values),
        "class_names": list(spec.class_names),
        "label_mode": spec.label_mode,
        "normalize": cfgmod.to_dict(norm),
        "patch_size": cfg.data.patch_size,
        "size_divisor": 2 ** resolved_depth(cfg.model),
        "test_images": [[str(s.image.resolve()), *(str(p.resolve()) for p in s.labels)] for s in data.test],
        "model": cfgmod.to_dict(cfg.model),
        "unet_tf_version": __version__,
    }
    pos_weight = pos_weight_from_fraction(fractions[1]) if spec.n_classes == 2 else None
    class_weights = class_weights_from_fractions(fractions) if spec.n_classes > 2 else None
    with strategy_scope(strategy):  # variables of model, optimizer and metrics live on every replica
        model = attach_info(build_model(cfg.model, spec.n_classes), info)
        loss = make_loss(
            cfg.train.loss, spec.n_classes, alpha=cfg.train.tversky_alpha, beta=cfg.train.tversky_beta,
            pos_weight=pos_weight, class_weights=class_weights,
        )
        # the learning rate is used as given, whatever the number of replicas
        model.compile(optimizer=keras.optimizers.Adam(cfg.train.lr), loss=loss, metrics=build_metrics(spec))

    resolved = cfgmod.to_dict(cfg)
    resolved["train"]["out"] = str(out_dir)
    resolved["resolved"] = {
        "data_dir": str(data.data_dir),
        "train_images": [str(s.image) for s in data.train],
        "val_images": [str(s.image) for s in data.val],
        "test_images": [str(s.image) for s in data.test],
        "class_fractions": dict(zip(spec.class_names, map(float, fractions))),
        "pos_weight": pos_weight,
        "class_weights": None if class_weights is None else list(map(float, class_weights)),
        "rare_classes": [spec.class_names[c] for c in rare],
        "replicas": replicas,
        "global_batch_size": batch,
        "workers": worker.count if worker else 1,
    }
    _write_json(run_dir / "config.json", resolved)

    checkpoint = _make_checkpoint_class()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        checkpoint(str(run_dir / "best.keras"), monitor="val_dice", mode="max", save_best_only=True),
        checkpoint(str(run_dir / "last.keras")),
        keras.callbacks.EarlyStopping(
            monitor="val_dice", mode="max", patience=cfg.train.early_stopping_patience, restore_best_weights=False
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=cfg.train.reduce_lr_patience, min_lr=1e-5
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=cfg.train.resume),
        keras.callbacks.TerminateOnNaN(),
    ]
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    if cfg.train.max_minutes:
        callbacks.append(_make_time_limit(cfg.train.max_minutes))
    callbacks += list(extra_callbacks)

    log(
        f"training {cfg.model.model} (base {cfg.model.base_filters}, {model.count_params():,} parameters) "
        f"on {spec.n_classes} classes {list(spec.class_names)}; run folder {out_dir}"
        f"{' (written by the chief)' if scratch else ''}"
    )
    if distributed:
        where = f"worker {worker.index} of {worker.count}{' (chief)' if worker.is_chief else ''}, " if worker else ""
        log(f"{where}{replicas} replicas in sync: {cfg.train.batch_size} patches each, {batch} per step, lr {cfg.train.lr:g}")
    t0 = time.perf_counter()
    if distributed:  # see unet_tf.distribute: why not model.fit
        history = fit_distributed(
            strategy, model,
            lambda shard: train_dataset(cfg.train.batch_size, shard).repeat(),
            lambda shard: val_dataset(cfg.train.batch_size, shard),
            epochs=cfg.train.epochs,
            steps_per_epoch=steps or steps_per_pass(len(train_images) * cfg.data.patches_per_image, batch),
            callbacks=callbacks, verbose=0 if scratch else verbose,
        )
    else:
        history = model.fit(
            train_ds, validation_data=val_ds, epochs=cfg.train.epochs, steps_per_epoch=steps,
            callbacks=callbacks, verbose=verbose, shuffle=False,
        )
    wall = time.perf_counter() - t0
    if any(not math.isfinite(v) for v in history.history.get("loss", [])):
        raise UserInputError("training diverged (NaN loss); try a smaller --lr")

    hist = _read_history(run_dir / "history.csv")
    plot_curves(hist, run_dir / "curves.png")
    val_dice = hist.get("val_dice", [])
    best = int(np.argmax(val_dice)) if val_dice else -1
    epochs_run = len(history.history.get("loss", []))
    steps_per_epoch = steps or math.ceil(len(train_images) * cfg.data.patches_per_image / batch)
    summary = {
        "run_dir": str(out_dir),
        "best_epoch": best + 1,
        "epochs_run": len(hist.get("loss", [])),
        "best": {k[4:]: v[best] for k, v in hist.items() if k.startswith("val_") and best >= 0 and len(v) > best},
        "wall_seconds": round(wall, 1),
        "train_patches_per_second": round(epochs_run * steps_per_epoch * batch / wall, 3)
        if wall > 0 else None,
        "n_train_images": len(data.train),
        "n_val_images": len(data.val),
        "parameters": int(model.count_params()),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if distributed:
        summary["distribute"] = {"strategy": cfg.train.strategy, "replicas": replicas, "global_batch_size": batch,
                                 "workers": worker.count if worker else 1}
    _write_json(run_dir / "summary.json", summary)
    return summary


def replace_cfg(cfg: RunConfig, **sections) -> RunConfig:
    """``cfg`` with sections replaced field-wise: replace_cfg(cfg, train={"epochs": 2})."""
    parts = {name: replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return replace(cfg, **parts)


__all__ = ["TrainingData", "train", "resolve_data", "labelled_pool", "replace_cfg", "ensure_demo_data"]
