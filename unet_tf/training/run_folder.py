"""The run folder of a training: config.json, history.csv -> curves.png, summary.json (best.keras and
last.keras are written by the checkpoints, :mod:`unet_tf.training.callbacks`), and :class:`RunSummary`,
what :func:`unet_tf.training.run.train` returns: the content of ``summary.json``, typed."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import keras
import matplotlib
import numpy as np
import tensorflow as tf

from unet_tf.config import RunConfig, to_dict
from unet_tf.data.layouts import ArraySample, Sample
from unet_tf.data.splits import TrainingData
from unet_tf.errors import UserInputError
from unet_tf.io.writers import atomic_path
from unet_tf.runtime import onednn_enabled

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.model}-{stamp}"


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserInputError(f"{run_dir}: cannot write the run folder here ({exc.strerror})") from None
    if not resume and (run_dir / "best.keras").exists():
        raise UserInputError(f"{run_dir}: already holds a finished run; use `train.resume` or another `train.out`")


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _sample_name(sample: Sample | ArraySample) -> str:
    return str(sample.image) if isinstance(sample, Sample) else sample.name


def write_config(run_dir: Path, out_dir: Path, cfg: RunConfig, data: TrainingData, balance, layout: dict) -> None:
    """``config.json``: every setting, and what the run resolved them to."""
    resolved = to_dict(cfg)
    resolved["train"]["out"] = str(out_dir)
    resolved["resolved"] = {
        "data_dir": str(data.data_dir) if data.data_dir else None,
        "train_images": [_sample_name(s) for s in data.train],
        "val_images": [_sample_name(s) for s in data.val],
        "test_images": [_sample_name(s) for s in data.test],
        "class_fractions": dict(zip(data.spec.class_names, map(float, balance.fractions))),
        "pos_weight": balance.pos_weight,
        "class_weights": None if balance.class_weights is None else list(map(float, balance.class_weights)),
        "rare_classes": [data.spec.class_names[c] for c in balance.rare],
        **layout,
    }
    write_json(run_dir / "config.json", resolved)


def read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r.get(k) not in (None, "")] for k in (rows[0] if rows else {})}


def plot_curves(history: dict, path: Path) -> None:
    """Loss and Dice per epoch, training and validation, as a PNG."""
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


def _best_epoch(hist: dict[str, list[float]]) -> int:
    """Index of the best epoch: highest finite val_dice, else lowest val_loss; -1 without history."""
    dice = np.asarray(hist.get("val_dice", []), float)
    if dice.size and np.isfinite(dice).any():
        return int(np.nanargmax(dice))
    loss = np.asarray(hist.get("val_loss", []), float)
    return int(np.nanargmin(loss)) if loss.size and np.isfinite(loss).any() else -1


@dataclass(frozen=True)
class RunSummary:
    """What one training run gave; :meth:`to_dict` is exactly the run's ``summary.json``.

    Attributes:
        run_dir: Path. The run folder (on a multi-worker run's other workers: the chief's).
        best_epoch: int. The epoch of ``best.keras``, counted from 1; 0 when no epoch has a finite
            validation Dice or loss.
        epochs_run: int. Rows of ``history.csv`` (a resumed run counts the interrupted run's epochs).
        best: validation scores of the best epoch, named without ``val_``: ``loss``, ``dice``,
            ``iou``, ``pixel_accuracy`` and, with more than two classes, ``dice_<class>``.
        wall_seconds: float. Seconds spent fitting in this process.
        train_patches_per_second: float or None (None when no time was measured).
        n_train_images, n_val_images: int. Images of each side of the split.
        parameters: int. The network's parameter count.
        precision: str. ``float32`` or ``mixed_bfloat16``.
        onednn: bool or None. Whether TensorFlow ran its oneDNN CPU kernels (None: cannot tell).
        tensorflow, keras: str. The versions that trained.
        distribute: dict or None. ``strategy``, ``replicas``, ``global_batch_size``, ``workers``;
            None on one device (then ``summary.json`` has no ``distribute`` key).
        stopped: str. Why training ended: ``epochs`` (all planned epochs ran), ``early_stopping``,
            ``time_limit`` (``train.max_minutes``) or ``callback`` (another callback). Not part of
            ``summary.json``; empty for a summary not made by a run.
    """

    run_dir: Path
    best_epoch: int
    epochs_run: int
    best: Mapping[str, float]
    wall_seconds: float
    train_patches_per_second: float | None
    n_train_images: int
    n_val_images: int
    parameters: int
    precision: str
    onednn: bool | None
    tensorflow: str
    keras: str
    distribute: Mapping[str, Any] | None = None
    stopped: str = field(default="", compare=False)

    @property
    def best_path(self) -> Path:
        """``best.keras``: the model of the best epoch."""
        return self.run_dir / "best.keras"

    @property
    def last_path(self) -> Path:
        """``last.keras``: the model after the last epoch."""
        return self.run_dir / "last.keras"

    @property
    def best_metric(self) -> str:
        """The score that picked the best epoch: ``dice``, or ``loss`` when validation Dice was undefined."""
        return "dice" if math.isfinite(self.best.get("dice", math.nan)) else "loss"

    @property
    def best_value(self) -> float | None:
        """The value of :attr:`best_metric` at the best epoch (None without one)."""
        return self.best.get(self.best_metric)

    @property
    def class_dice(self) -> dict[str, float]:
        """Validation Dice per foreground class at the best epoch, by column name (``myelinated_axon``);
        empty for a binary task, whose one foreground Dice is ``best["dice"]``."""
        return {k[len("dice_") :]: v for k, v in self.best.items() if k.startswith("dice_")}

    def to_dict(self) -> dict[str, Any]:
        """The content of ``summary.json``: the fields above but ``stopped``, ``distribute`` only when set."""
        out = {
            "run_dir": str(self.run_dir),
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "best": dict(self.best),
            "wall_seconds": self.wall_seconds,
            "train_patches_per_second": self.train_patches_per_second,
            "n_train_images": self.n_train_images,
            "n_val_images": self.n_val_images,
            "parameters": self.parameters,
            "precision": self.precision,
            "onednn": self.onednn,
            "tensorflow": self.tensorflow,
            "keras": self.keras,
        }
        if self.distribute:
            out["distribute"] = dict(self.distribute)
        return out


def write_summary(
    run_dir: Path,
    out_dir: Path,
    *,
    parameters: int,
    data: TrainingData,
    patches: int,
    wall: float,
    precision: str,
    layout: dict | None,
    stopped: str,
) -> RunSummary:
    """Plot the curves and write ``summary.json`` (best epoch and its validation scores).

    Args:
        run_dir: where to write; out_dir: the run folder the summary names.
        parameters: the model's parameter count; data: the run's images.
        patches: training patches seen in this process; wall: its seconds of fitting.
        precision: the precision it trained in; layout: replicas and workers (None on one device).
        stopped: why training ended (:attr:`RunSummary.stopped`).
    """
    hist = read_history(run_dir / "history.csv")
    plot_curves(hist, run_dir / "curves.png")
    best = _best_epoch(hist)
    summary = RunSummary(
        run_dir=out_dir,
        best_epoch=best + 1,
        epochs_run=len(hist.get("loss", [])),
        best={k[4:]: v[best] for k, v in hist.items() if k.startswith("val_") and best >= 0 and len(v) > best},
        wall_seconds=round(wall, 1),
        train_patches_per_second=round(patches / wall, 3) if wall > 0 else None,
        n_train_images=len(data.train),
        n_val_images=len(data.val),
        parameters=parameters,
        precision=precision,
        onednn=onednn_enabled(),  # TensorFlow's oneDNN CPU kernels (unet_tf.runtime)
        tensorflow=tf.__version__,
        keras=keras.__version__,
        distribute=layout,
        stopped=stopped,
    )
    write_json(run_dir / "summary.json", summary.to_dict())
    return summary
