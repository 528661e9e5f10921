"""The run folder of a training: config.json, history.csv -> curves.png, summary.json (best.keras and
last.keras are written by the checkpoints)."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

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
        raise UserInputError(f"{run_dir}: already holds a finished run; use --resume or another --out")


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


def write_summary(
    run_dir: Path, out_dir: Path, model: keras.Model, data: TrainingData, rate: dict, wall: float, layout: dict | None
) -> dict:
    """Plot the curves and write ``summary.json`` (best epoch and its validation scores)."""
    hist = read_history(run_dir / "history.csv")
    plot_curves(hist, run_dir / "curves.png")
    best = _best_epoch(hist)
    patches = rate["epochs"] * rate["steps_per_epoch"] * rate["batch"]
    summary = {
        "run_dir": str(out_dir),
        "best_epoch": best + 1,
        "epochs_run": len(hist.get("loss", [])),
        "best": {k[4:]: v[best] for k, v in hist.items() if k.startswith("val_") and best >= 0 and len(v) > best},
        "wall_seconds": round(wall, 1),
        "train_patches_per_second": round(patches / wall, 3) if wall > 0 else None,
        "n_train_images": len(data.train),
        "n_val_images": len(data.val),
        "parameters": int(model.count_params()),
        "precision": rate.get("precision", "float32"),
        "onednn": onednn_enabled(),  # TensorFlow's oneDNN CPU kernels (unet_tf.runtime)
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if layout:
        summary["distribute"] = layout
    write_json(run_dir / "summary.json", summary)
    return summary
