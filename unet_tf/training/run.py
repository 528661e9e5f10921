"""Train one model and keep its run folder: best.keras, last.keras, config, history, plots.

:func:`train` is the one entry point used by ``train.py``, the ablation grid,
notebooks and the tests. It reads as the phases of a run (nnU-Net's
``run_training`` is the model)::

    start_strategy -> prepare_run (fine-tuning settings, data, object scale, plan, run folder) -> load_arrays
    -> check_workers -> class_balance -> seed -> choose_precision -> build_or_init_model
    -> record_start (config.json) -> fit_model (unet_tf.training.fit.fit) -> check_divergence
    -> summarize (summary.json, a RunSummary)

Each phase is a typed function, usable on its own (``start_strategy`` and
``check_workers`` live in :mod:`~unet_tf.training.distribute`, ``choose_precision``
in :mod:`~unet_tf.training.precision`); :class:`RunContext` holds what every
phase reads (settings, data, folders, devices).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from unet_tf import __version__
from unet_tf.config import RunConfig, n_outputs, steps_per_pass
from unet_tf.data.labels import load_pairs, read_border_weights, with_marker_margin
from unet_tf.data.layouts import DatasetSpec, Sample
from unet_tf.data.pipeline import make_dataset
from unet_tf.data.rescale import rescale_to_diameter
from unet_tf.data.sampling import balanced_shares, bright_background, class_counts, rare_classes_from_counts
from unet_tf.data.splits import TrainingData, resolve_data
from unet_tf.data.targets import IGNORE_ID, format_ignore_stats, ignore_stats
from unet_tf.errors import UserInputError
from unet_tf.io.metadata import pixel_size_um
from unet_tf.io.tables import score_column
from unet_tf.models.build import build_model, check_input_size, resolved_depth
from unet_tf.models.file import ModelInfo, attach_info
from unet_tf.runtime import quiet_run
from unet_tf.training.calibration import calibrate_model_file, inherit_threshold
from unet_tf.training.callbacks import choose_monitor, make_callbacks, stop_reason
from unet_tf.training.distribute import (
    WorkerInfo,
    check_workers,
    distribution,
    is_default,
    start_strategy,
    strategy_scope,
)
from unet_tf.training.finetune import finetune_config, init_from, with_parent_scale
from unet_tf.training.fit import fit
from unet_tf.training.losses import class_weights_from_fractions, make_loss, pos_weight_from_fraction
from unet_tf.training.metrics import DiceScore, IoUScore, PixelAccuracy
from unet_tf.training.plan import Fingerprint, Plan, apply_plan, fingerprint
from unet_tf.training.precision import choose_precision, dtype_policy
from unet_tf.training.run_folder import RunSummary, default_run_dir, prepare_run_dir, write_config, write_summary

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
    binary = n_outputs(spec.n_classes) == 1  # one sigmoid channel: a positive weight, not class weights
    return Balance(
        fractions=fractions,
        rare=tuple(rare_classes_from_counts(counts)),
        pos_weight=pos_weight_from_fraction(fractions[1]) if binary else None,
        class_weights=None if binary else class_weights_from_fractions(fractions),
    )


def _training_pixel_size(samples: Sequence[Any]) -> tuple[float | None, str]:
    """(µm per px of the training image files, what it rests on): None unless every file states one and they
    agree within 1 %."""
    sizes = [pixel_size_um(s.image)[0] if isinstance(s, Sample) else None for s in samples]
    if not sizes or None in sizes:
        return None, "pixel size unknown"
    low, high = min(sizes), max(sizes)
    if high > 1.01 * low:
        return None, f"pixel sizes differ ({low:g}-{high:g} µm): none stored"
    return float(np.median(sizes)), f"pixel size {float(np.median(sizes)):g} µm"


def model_info_for(
    cfg: RunConfig, data: TrainingData, log: Log = lambda line: None, fp: Fingerprint | None = None
) -> ModelInfo:
    """The :class:`ModelInfo` that travels inside the run's model files.

    It carries the training objects' typical diameter (the median of the fingerprint ``fp``, measured here when
    None: :func:`unet_tf.training.plan.fingerprint`) and pixel size, logged with ``log``, and, for an instance
    model, the smallest object worth reporting.
    """
    spec = data.spec
    fp = fp or fingerprint(data)
    pixel_size, pixel_text = _training_pixel_size((*data.train, *data.val))
    diameter = None if fp.object_diameter is None else round(fp.object_diameter, 3)
    what = "instances" if spec.target == "instances" else f"connected components of {', '.join(spec.class_names[1:])}"
    if diameter is None:
        log(f"object scale: no objects in the training labels; the model holds no object diameter ({pixel_text})")
    else:
        log(f"object scale: median diameter {diameter:g} px over {fp.n_objects} {what} ({pixel_text})")
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
        min_size=fp.min_size,
        object_diameter=diameter,
        pixel_size_um=pixel_size,
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


def image_shares(cfg: RunConfig, images: Sequence[np.ndarray], log: Log) -> np.ndarray | None:
    """Each training image's share of the patches (``data.balance_background``), or None: all equal."""
    if not cfg.data.balance_background:
        return None
    bright = bright_background(images)
    shares = balanced_shares(bright)
    log(
        f"patch shares: {int(bright.sum())} bright-background images get "
        f"{shares[bright].sum() / shares.sum():.0%} of the patches, {int((~bright).sum())} dark-background "
        f"{shares[~bright].sum() / shares.sum():.0%}"
    )
    return shares


def patch_datasets(cfg: RunConfig, arrays: Arrays, spec: DatasetSpec, balance: Balance, log: Log = print):
    """``(train(shard), val(shard))``: tf.data pipelines of one replica's batches for worker shard ``(i, n)``."""
    d, batch = cfg.data, cfg.train.batch_size
    rare = list(balance.rare)
    shares = image_shares(cfg, arrays.train_images, log)

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
            image_shares=shares,
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


@dataclass(frozen=True)
class RunContext:
    """What every phase of one run reads.

    Attributes:
        cfg: the run's settings, after :func:`~unet_tf.training.finetune.finetune_config`.
        data: its images (resolved from ``cfg.data`` unless given).
        out_dir: the run folder (``train.out``, or ``runs/<dataset>-<model>-<time>``).
        run_dir: where this process writes: ``out_dir``, or a scratch folder on a worker other than the chief.
        strategy: the ``tf.distribute.Strategy`` (:mod:`unet_tf.training.distribute`).
        worker: this process's place in a multi-worker cluster; None otherwise.
        log: callable taking one line of text.
        verbose: Keras progress ("auto", 0, 1, 2).
    """

    cfg: RunConfig
    data: TrainingData
    out_dir: Path
    run_dir: Path
    strategy: Any
    worker: WorkerInfo | None = None
    log: Log = print
    verbose: int | str = "auto"
    fingerprint: Fingerprint | None = None  # of the training data, and the plan from it (unet_tf.training.plan)
    plan: Plan | None = None

    @property
    def by_chief(self) -> bool:
        """True on a worker whose run folder the chief writes (this one writes to scratch)."""
        return self.run_dir != self.out_dir

    @property
    def layout(self) -> dict | None:
        """Replicas and workers (:func:`~unet_tf.training.distribute.distribution`); None on one device."""
        return distribution(self.strategy, self.cfg.train.strategy, self.cfg.train.batch_size, self.worker)


@dataclass(frozen=True)
class Fitted:
    """What :func:`fit_model` gives :func:`summarize`: the Keras history of this process (metric ->
    values per epoch), steps per epoch, the global batch, seconds spent and why training ended."""

    history: dict[str, list[float]]
    steps_per_epoch: int
    batch: int
    wall_seconds: float
    stopped: str


@quiet_run()  # notes said once per run, TensorFlow's native log lines hidden (e.g. at the first epoch)
def train(
    cfg: RunConfig,
    data: TrainingData | None = None,
    log: Log = print,
    verbose: int | str = "auto",
    extra_callbacks: Sequence = (),
) -> RunSummary:
    """Train one model; returns its :class:`~unet_tf.training.run_folder.RunSummary` (``summary.json``).

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
        >>> unet_tf.train(cfg).best_path  # doctest: +SKIP
        PosixPath('runs/demo/best.keras')
    """
    strategy, worker = start_strategy(cfg.train.strategy, log)
    if worker is None or worker.is_chief:
        return run_phases(prepare_run(cfg, data, strategy, worker, log, verbose), extra_callbacks)
    with tempfile.TemporaryDirectory(prefix=f"unet_tf-worker{worker.index}-") as scratch:
        return run_phases(prepare_run(cfg, data, strategy, worker, log, 0, Path(scratch)), extra_callbacks)


def run_phases(ctx: RunContext, extra_callbacks: Sequence = ()) -> RunSummary:
    """The phases of :func:`train` after :func:`prepare_run`, in order (the order of random draws)."""
    arrays = load_arrays(ctx.data, ctx.cfg, ctx.log)
    check_workers(len(arrays.train_images) * ctx.cfg.data.patches_per_image, ctx.worker)
    balance = class_balance(arrays.train_masks, ctx.data.spec, ctx.log)
    keras.utils.set_random_seed(ctx.cfg.train.seed)  # before building: the weights and patches follow the seed
    precision = choose_precision(ctx.cfg.train.precision, len(tf.config.list_physical_devices("GPU")), ctx.log)
    model, parent = build_or_init_model(ctx, balance, precision)
    record_start(ctx, model, balance, parent)
    fitted = fit_model(ctx, model, arrays, balance, extra_callbacks)
    check_divergence(fitted.history)
    calibrate(ctx, arrays)
    return summarize(ctx, model, fitted, precision)


def prepare_run(
    cfg: RunConfig,
    data: TrainingData | None,
    strategy: Any,
    worker: WorkerInfo | None = None,
    log: Log = print,
    verbose: int | str = "auto",
    scratch: Path | None = None,
) -> RunContext:
    """Check the settings, resolve the data and make the run folder (``scratch``: a worker's own).

    Fine-tuning settings first (:func:`~unet_tf.training.finetune.finetune_config`: a parent's
    architecture replaces ``cfg.model``), then the patch size against the depth, the data (brought to the
    object scale of ``data.object_diameter`` or of the parent, :mod:`unet_tf.data.rescale`), the folder.
    """
    cfg = finetune_config(cfg, is_default(strategy), log)
    if cfg.data.patch_size is not None:  # a set patch size that cannot work fails before the data is read
        check_input_size(cfg.data.patch_size, resolved_depth(cfg.model), "`data.patch_size`")
    data = data or resolve_data(cfg, log)
    cfg = with_parent_scale(cfg, data.spec, log)
    data = rescale_to_diameter(data, cfg.data.object_diameter, log)
    cfg, data, fp, planned = apply_plan(cfg, data, log)
    check_input_size(cfg.data.patch_size, resolved_depth(cfg.model), "`data.patch_size`")
    out_dir = Path(cfg.train.out) if cfg.train.out else default_run_dir(cfg)
    run_dir = scratch or out_dir
    prepare_run_dir(run_dir, cfg.train.resume)
    return RunContext(cfg, data, out_dir, run_dir, strategy, worker, log, verbose, fp, planned)


def build_or_init_model(ctx: RunContext, balance: Balance, precision: str) -> tuple[keras.Model, dict | None]:
    """``(model, parent)``: the compiled network, its weights from ``train.init_from`` when set (``parent``:
    what :func:`~unet_tf.training.finetune.init_from` reports for ``config.json``, else None)."""
    # variables of model, optimizer and metrics live on every replica; layers take the precision's dtype policy
    with strategy_scope(ctx.strategy), dtype_policy(precision):
        info = model_info_for(ctx.cfg, ctx.data, ctx.log, ctx.fingerprint)
        model = compile_model(ctx.cfg, info, ctx.data.spec, balance)
        parent = init_from(model, ctx.cfg.train.init_from, ctx.log) if ctx.cfg.train.init_from else None
    return model, parent


def record_start(ctx: RunContext, model: keras.Model, balance: Balance, parent: dict | None) -> None:
    """Write ``config.json`` (settings, resolved data, devices, parent) and say what is trained where."""
    layout = ctx.layout or {"replicas": 1, "global_batch_size": ctx.cfg.train.batch_size, "workers": 1}
    planned = {"fingerprint": asdict(ctx.fingerprint), "plan": asdict(ctx.plan)} if ctx.plan else {}
    write_config(ctx.run_dir, ctx.out_dir, ctx.cfg, ctx.data, balance, {**layout, "parent": parent, **planned})
    spec, m = ctx.data.spec, ctx.cfg.model
    ctx.log(
        f"training {m.model} (base {m.base_filters}, {model.count_params():,} parameters) on "
        f"{spec.n_classes} classes {list(spec.class_names)}; run folder {ctx.out_dir}"
        f"{' (written by the chief)' if ctx.by_chief else ''}"
    )


def fit_model(ctx: RunContext, model: keras.Model, arrays: Arrays, balance: Balance, extra_callbacks=()) -> Fitted:
    """Fit ``model`` on the patches of ``arrays`` with the run's callbacks (:func:`unet_tf.training.fit.fit`)."""
    t, layout = ctx.cfg.train, ctx.layout
    batch = layout["global_batch_size"] if layout else t.batch_size
    steps = t.steps_per_epoch or steps_per_pass(len(arrays.train_images), ctx.cfg.data.patches_per_image, batch)
    t0 = time.perf_counter()
    callbacks = make_callbacks(ctx.cfg, ctx.run_dir, steps, choose_monitor(arrays.val_masks, ctx.log), extra_callbacks)
    history = fit(
        ctx.strategy,
        model,
        *patch_datasets(ctx.cfg, arrays, ctx.data.spec, balance, ctx.log),
        epochs=t.epochs,
        steps_per_epoch=t.steps_per_epoch,
        pass_steps=steps,
        callbacks=callbacks,
        verbose=ctx.verbose,
        log=ctx.log,
    )
    wall = time.perf_counter() - t0
    epochs_done = history.epoch[-1] + 1 if history.epoch else 0
    return Fitted(history.history, steps, batch, wall, stop_reason(callbacks, epochs_done, t.epochs))


def check_divergence(history: dict[str, list[float]]) -> None:
    """UserInputError when the training loss became NaN or infinite."""
    if any(not math.isfinite(v) for v in history.get("loss", [])):
        raise UserInputError("training diverged (NaN loss); try a smaller `train.lr`")


def calibrate(ctx: RunContext, arrays: Arrays) -> None:
    """An instance model's foreground threshold, chosen on the validation images and written into
    ``best.keras`` (:mod:`unet_tf.training.calibration`), else its ``train.init_from`` parent's; not on a
    worker whose folder the chief writes."""
    best = ctx.run_dir / "best.keras"
    if ctx.data.spec.target != "instances" or ctx.by_chief or not best.exists():
        return
    ignores = [mask == IGNORE_ID for mask in arrays.val_masks]
    calibration = calibrate_model_file(best, ctx.data.val, ctx.data.spec, ignores, ctx.log)
    if calibration.threshold is None and ctx.cfg.train.init_from:
        inherit_threshold(best, ctx.cfg.train.init_from, ctx.log)


def summarize(ctx: RunContext, model: keras.Model, fitted: Fitted, precision: str) -> RunSummary:
    """Plot the curves, write ``summary.json`` and return it as a :class:`RunSummary`."""
    epochs = len(fitted.history.get("loss", []))
    return write_summary(
        ctx.run_dir,
        ctx.out_dir,
        parameters=int(model.count_params()),
        data=ctx.data,
        patches=epochs * fitted.steps_per_epoch * fitted.batch,
        wall=fitted.wall_seconds,
        precision=precision,
        layout=ctx.layout,
        stopped=fitted.stopped,
    )


__all__ = [
    "train",
    "RunContext",
    "prepare_run",
    "load_arrays",
    "class_balance",
    "build_or_init_model",
    "model_info_for",
    "compile_model",
    "fit_model",
    "check_divergence",
    "calibrate",
    "summarize",
    "patch_datasets",
]
