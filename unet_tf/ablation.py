"""Training-set-size ablation: test Dice against the number of labelled images.

The grid is sizes x augmentation on/off x model(s) x repeats. Repeat ``r`` uses
seed ``base seed + r``: a different subset of images (:func:`choose_subset`),
a different validation split and a different initialisation. Augmentation
settings and models share the seed's subset, so they are compared on the same
images. Every cell trains exactly like ``train.py --train-size N --seed S``
(``N`` labelled images, ``--val-fraction`` of them for validation and the
choice of ``best.keras``) and is tested on the SAME held-out images: the
dataset's labelled test split, or with ``--holdout K`` the last K labelled
training images, which are removed from the pool before any subset is drawn.

Budget (:func:`cell_schedule`): ``steps`` (default) gives every cell the same
number of optimizer steps, ``epochs`` the fixed-epoch protocol of the
literature (one epoch = one pass over ``patches_per_image x images`` patches).
Early stopping never cuts a cell short; ``best.keras`` is kept by ``val_dice``.

Output folder::

    ablation.csv           one row per cell (written after each cell, atomically)
    ablation_summary.csv   mean and std over repeats per model / augmentation / size
    ablation.md            the summary as a Markdown table
    ablation.png           mean test Dice against size (log x), std error bars
    ablation.json          the grid's base settings (a rerun must match them)
    cells/<model>-n<size>-aug<on|off>-s<seed>/   the run folder, test/ predictions

Test scores are the per-image ``"mean"`` rows of :mod:`unet_tf.evaluation`
(every test image weighs the same); ``mean_dice`` is the mean of the
foreground classes' Dice (classes absent from truth and prediction, NaN, are
skipped). Running the same command again skips the cells that have a row in
``ablation.csv``; a cell interrupted in training resumes from its last epoch.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import config as cfgmod
from .config import RunConfig
from .datasets import Sample, list_samples, split_train_val
from .errors import UserInputError
from .io import atomic_path
from .config import replace_config as replace_cfg
from .datasets import labelled_pool, resolve_data
from .training import train

BUDGETS = ("steps", "epochs")
ROW_KEY = ("model", "size", "augment", "seed")
_INT_COLUMNS = {"size", "seed", "n_train", "n_val", "n_test", "epochs", "steps", "best_epoch"}
_TEXT_COLUMNS = {"model", "augment", "run_dir"}
_TAIL_COLUMNS = (
    "mean_dice", "pixel_accuracy", "n_train", "n_val", "n_test", "epochs", "steps", "best_epoch",
    "train_seconds", "test_seconds", "wall_seconds", "run_dir",
)


# === The grid ===


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    model: str
    size: int
    augment: bool
    seed: int
    repeat: int

    @property
    def name(self) -> str:
        """Folder name: ``<model>-n<size>-aug<on|off>-s<seed>``."""
        return f"{self.model}-n{self.size}-aug{on_off(self.augment)}-s{self.seed}"

    @property
    def key(self) -> tuple[str, int, str, int]:
        """The row key in ``ablation.csv``: (model, size, "on"/"off", seed)."""
        return (self.model, self.size, on_off(self.augment), self.seed)

    def describe(self) -> str:
        return f"{self.model} n={self.size} aug={on_off(self.augment)} seed={self.seed}"


def on_off(flag: bool) -> str:
    return "on" if flag else "off"


def plan_grid(
    sizes: Sequence[int], augments: Sequence[bool], models: Sequence[str], repeats: int, base_seed: int = 0
) -> list[Cell]:
    """Every cell, repeat outermost (a full curve per seed early), then model, size, augmentation.

    Repeat ``r`` has seed ``base_seed + r``. Duplicates in the inputs are dropped.
    """
    sizes = sorted(dict.fromkeys(int(s) for s in sizes))
    augments = list(dict.fromkeys(bool(a) for a in augments))
    models = list(dict.fromkeys(models))
    return [
        Cell(model, size, augment, base_seed + r, r)
        for r in range(repeats)
        for model in models
        for size in sizes
        for augment in augments
    ]


# === The budget ===


@dataclass(frozen=True)
class Schedule:
    """Epochs and steps per epoch of one cell; ``steps_per_epoch=None``: one pass over the patches."""

    epochs: int
    steps_per_epoch: int | None
    total_steps: int


def n_train_images(size: int, val_fraction: float) -> int:
    """Images left for training when ``size`` labelled images are split as :func:`split_train_val` does."""
    train, val = split_train_val(list(range(size)), val_fraction)
    return len(train)


def pass_steps(n_images: int, patches_per_image: int, batch_size: int) -> int:
    """Steps of one pass over ``patches_per_image x n_images`` patches (the last batch may be short)."""
    return max(1, math.ceil(n_images * patches_per_image / batch_size))


def total_step_budget(cfg: RunConfig, sizes: Sequence[int], budget_steps: int | None = None) -> int:
    """Optimizer steps of every cell under the ``steps`` budget.

    ``budget_steps`` if given, else ``epochs x steps_per_epoch`` of ``cfg``; when
    ``cfg`` leaves steps per epoch to the data, the steps the largest size gets in
    ``epochs`` passes (so the largest set is not under-trained).
    """
    if budget_steps is not None:
        return int(budget_steps)
    t, d = cfg.train, cfg.data
    if t.steps_per_epoch:
        return t.epochs * t.steps_per_epoch
    largest = n_train_images(max(sizes), d.val_fraction)
    return t.epochs * pass_steps(largest, d.patches_per_image, t.batch_size)


def cell_schedule(cfg: RunConfig, size: int, budget: str, total_steps: int | None = None) -> Schedule:
    """Epochs and steps per epoch of a cell of ``size`` images.

    ``steps``: ``cfg.train.epochs`` epochs (fewer if the budget is smaller) of
    ``ceil(total_steps / epochs)`` steps, the same for every size. ``epochs``:
    ``cfg.train.epochs`` passes over the cell's training patches.
    """
    t, d = cfg.train, cfg.data
    if budget == "steps":
        if not total_steps or total_steps < 1:
            raise UserInputError(f"--budget-steps {total_steps}: must be at least 1")
        epochs = min(t.epochs, total_steps)
        per_epoch = math.ceil(total_steps / epochs)
        return Schedule(epochs, per_epoch, epochs * per_epoch)
    if budget == "epochs":
        per_pass = pass_steps(n_train_images(size, d.val_fraction), d.patches_per_image, t.batch_size)
        return Schedule(t.epochs, None, t.epochs * per_pass)
    raise UserInputError(f"--budget {budget}: choose one of {', '.join(BUDGETS)}")


def cell_config(base: RunConfig, cell: Cell, schedule: Schedule, run_dir: Path, resume: bool) -> RunConfig:
    """The run configuration of one cell: base settings with its size, seed, augmentation, model and budget."""
    return replace_cfg(
        base,
        data={"train_size": cell.size, "augment": replace(base.data.augment, enabled=cell.augment)},
        model={"model": cell.model},
        train={
            "seed": cell.seed,
            "epochs": schedule.epochs,
            "steps_per_epoch": schedule.steps_per_epoch,
            "early_stopping_patience": schedule.epochs,  # never stops before the budget is spent
            "out": str(run_dir),
            "resume": resume,
        },
    )


# === Data: the pool of training images and the fixed test set ===


@dataclass(frozen=True)
class AblationData:
    """The labelled images subsets are drawn from, and the test images every cell is scored on."""

    data_dir: Path
    class_names: tuple[str, ...]
    pool: tuple[Sample, ...]
    test: tuple[Sample, ...]


def resolve_pool(cfg: RunConfig, log: Callable[[str], None] = print) -> AblationData:
    """Training pool (labelled training images minus ``--holdout``) and the labelled test images."""
    d = cfg.data
    data_dir, spec, pool, held = labelled_pool(cfg, log)
    if held:
        test = held
    else:
        try:
            test = [s for s in list_samples(d.dataset, data_dir, "test") if s.labels]
        except UserInputError:
            test = []
        if not test:
            raise UserInputError(
                f"{data_dir}: no labelled test images for the ablation; use --holdout N to keep the last N "
                "labelled training images as the test set"
            )
    return AblationData(data_dir, spec.class_names, tuple(pool), tuple(test))


# === Rows: one per cell ===


def column_name(class_name: str) -> str:
    """``dice_<class>`` with non-word characters replaced (as the training metrics do)."""
    return "dice_" + re.sub(r"\W+", "_", class_name)


def row_columns(class_names: Sequence[str]) -> tuple[str, ...]:
    """Columns of ``ablation.csv`` for a dataset with these classes (class 0 the background)."""
    return (*ROW_KEY, *(column_name(c) for c in class_names[1:]), *_TAIL_COLUMNS)


def scores_from_metrics(metrics_rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> dict[str, float]:
    """Per-class test Dice, mean foreground Dice and pixel accuracy from the ``"mean"`` rows of evaluation."""
    mean_rows = {r["class"]: r for r in metrics_rows if r.get("image") == "mean"}
    scores = {column_name(c): _float(mean_rows.get(c, {}).get("dice")) for c in class_names[1:]}
    scores["mean_dice"] = nanmean(scores.values())
    accuracy = [_float(r.get("pixel_accuracy")) for r in mean_rows.values()]
    scores["pixel_accuracy"] = accuracy[0] if accuracy else math.nan
    return scores


def _float(value: Any) -> float:
    return math.nan if value is None or value == "" else float(value)


def nanmean(values: Iterable[float]) -> float:
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else math.nan


def nanstd(values: Iterable[float]) -> float:
    """Sample standard deviation (ddof 1) of the finite values; NaN for fewer than two."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.std(kept, ddof=1)) if len(kept) > 1 else math.nan


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an ``ablation.csv`` with numbers parsed; empty list if there is no file."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def _parse(column: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    if column in _TEXT_COLUMNS:
        return text
    if column in _INT_COLUMNS:
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> Path:
    """Write ``rows`` (sorted by model, size, augmentation, seed) atomically."""
    from .evaluation import write_csv

    columns = list(row_columns(class_names))
    columns += [k for row in rows for k in row if k not in columns]  # keep columns of older rows
    return write_csv(path, sort_rows(rows), list(dict.fromkeys(columns)))


def sort_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in rows), key=lambda r: (str(r["model"]), int(r["size"]), str(r["augment"]), int(r["seed"])))


def row_key(row: Mapping[str, Any]) -> tuple[str, int, str, int]:
    return (str(row["model"]), int(row["size"]), str(row["augment"]), int(row["seed"]))


# === Summary, table and plot ===


def score_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per-class Dice columns, then ``mean_dice`` and ``pixel_accuracy`` (those present)."""
    names = list(dict.fromkeys(k for r in rows for k in r if k.startswith("dice_")))
    return names + [k for k in ("mean_dice", "pixel_accuracy") if any(k in r for r in rows)]


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std (ddof 1, over repeats) per model, augmentation and size.

    One dict per group with ``model, augment, size, runs``, ``<score>_mean`` and
    ``<score>_std`` for every score column, the mean ``steps`` and ``wall_seconds``.
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in sort_rows(rows):
        groups.setdefault((row["model"], row["augment"], int(row["size"])), []).append(row)
    out = []
    for (model, augment, size), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "on", kv[0][2])):
        entry: dict[str, Any] = {"model": model, "augment": augment, "size": size, "runs": len(members)}
        for col in score_columns(members):
            values = [_float(r.get(col)) for r in members]
            entry[f"{col}_mean"] = nanmean(values)
            entry[f"{col}_std"] = nanstd(values)
        entry["steps"] = nanmean(_float(r.get("steps")) for r in members)
        entry["wall_seconds"] = round(nanmean(_float(r.get("wall_seconds")) for r in members), 1)
        out.append(entry)
    return out


def _pm(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "nan"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a Markdown table: mean ± std over repeats (no ± with one repeat)."""
    if not summary:
        return "(no finished cells)\n"
    classes = [k[len("dice_"):-len("_mean")] for k in summary[0] if k.startswith("dice_") and k.endswith("_mean")]
    header = ["model", "augment", "images", "runs", "mean Dice", *(f"Dice {c}" for c in classes), "pixel accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---", "--:", "--:"] + ["--:"] * (len(header) - 4)) + "|"]
    for e in summary:
        cells = [str(e["model"]), str(e["augment"]), str(e["size"]), str(e["runs"]),
                 _pm(e["mean_dice_mean"], e["mean_dice_std"])]
        cells += [_pm(e[f"dice_{c}_mean"], e[f"dice_{c}_std"]) for c in classes]
        cells.append(_pm(e.get("pixel_accuracy_mean", math.nan), e.get("pixel_accuracy_std", math.nan)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_plot(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Mean test Dice against training-set size (log x), one line per model and augmentation.

    Error bars: std over repeats; single runs are drawn as faint dots.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    summary = summarize(rows)
    lines = list(dict.fromkeys((e["model"], e["augment"]) for e in summary))
    several_models = len({m for m, _ in lines}) > 1
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (model, augment) in enumerate(lines):
        shift = 1 + 0.025 * (i - (len(lines) - 1) / 2)  # small offsets keep error bars apart
        entries = [e for e in summary if (e["model"], e["augment"]) == (model, augment)]
        x = np.array([e["size"] for e in entries], float) * shift
        y = np.array([e["mean_dice_mean"] for e in entries])
        err = np.nan_to_num(np.array([e["mean_dice_std"] for e in entries]))
        label = f"{model}, augmentation {augment}" if several_models else f"augmentation {augment}"
        line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label,
                           linestyle="-" if augment == "on" else "--")
        runs = [r for r in rows if (r["model"], r["augment"]) == (model, augment)]
        ax.scatter([int(r["size"]) * shift for r in runs], [_float(r.get("mean_dice")) for r in runs],
                   s=10, alpha=0.35, color=line[0].get_color())
    sizes = sorted({int(r["size"]) for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("labelled images (training + validation)")
    ax.set_ylabel("test Dice (mean over foreground classes)")
    ax.set_title(title or "test Dice against training-set size")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def write_reports(
    rows: Sequence[Mapping[str, Any]], out_dir: Path, class_names: Sequence[str], note: str = "", title: str | None = None
) -> None:
    """``ablation.csv``, ``ablation_summary.csv``, ``ablation.md`` and ``ablation.png``."""
    from .evaluation import write_csv

    write_rows(out_dir / "ablation.csv", rows, class_names)
    if not rows:
        return
    summary = summarize(rows)
    write_csv(out_dir / "ablation_summary.csv", summary, list(dict.fromkeys(k for e in summary for k in e)))
    with atomic_path(out_dir / "ablation.md") as tmp:
        tmp.write_text((note + "\n\n" if note else "") + markdown_table(summary), encoding="utf-8")
    write_plot(rows, out_dir / "ablation.png", title)


# === Running the grid ===


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def grid_settings(cfg: RunConfig, data_dir: Path, budget: str, schedule_steps: int | None) -> dict:
    """What every cell shares: base settings minus what varies per cell, and the budget."""
    settings = cfgmod.to_dict(cfg)
    settings["data"]["data_dir"] = str(data_dir.resolve())
    for section, key in (("data", "train_size"), ("model", "model"), ("train", "seed"), ("train", "out"),
                         ("train", "resume"), ("train", "early_stopping_patience")):
        settings[section].pop(key, None)
    settings["data"]["augment"].pop("enabled", None)
    settings["budget"] = {"kind": budget, "total_steps": schedule_steps}
    return json.loads(json.dumps(settings))  # tuples -> lists, as read back from the file


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def check_settings(path: Path, settings: dict) -> None:
    """Refuse to mix cells of different base settings in one output folder."""
    if not path.is_file():
        return
    old, new = _flatten(json.loads(path.read_text())), _flatten(settings)
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:3])
        raise UserInputError(
            f"{path.parent}: holds an ablation with other settings ({shown}{' ...' if len(diff) > 3 else ''}); "
            "use another --out or the same settings"
        )


def evaluate_cell(run_dir: Path, test: Sequence[Sample], log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Segment the test images with ``run_dir/best.keras`` into ``run_dir/test``; the evaluation rows."""
    from .config import PredictConfig
    from .model_file import load_model
    from .prediction import predict_files

    model = load_model(run_dir / "best.keras")
    result = predict_files(model, test, run_dir / "test", PredictConfig(overlay=False), log=log)
    return result["metrics"]


def _clear_keras() -> None:
    """Free the graphs of the finished cell (a long grid builds many models in one process)."""
    import keras

    keras.backend.clear_session()


def run_cell(
    base: RunConfig, cell: Cell, schedule: Schedule, out_dir: Path, data: AblationData,
    log: Callable[[str], None] = print, verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train (or resume, or reuse a finished training of) one cell, test it; its row."""
    run_dir = out_dir / "cells" / cell.name
    t0 = time.perf_counter()
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and (run_dir / "best.keras").is_file():
        log(f"  training finished before: testing {run_dir}")
        summary = json.loads(summary_path.read_text())
        train_seconds = float(summary.get("wall_seconds") or 0.0)
    else:
        resume = (run_dir / "backup").is_dir()
        if resume:
            log(f"  resuming the interrupted training in {run_dir}")
        elif run_dir.exists():
            shutil.rmtree(run_dir)  # interrupted before its first epoch ended: start clean
        cfg = cell_config(base, cell, schedule, run_dir, resume)
        summary = train(cfg, resolve_data(cfg, log=lambda _: None), log=log, verbose=verbose)
        train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = evaluate_cell(run_dir, data.test, log=lambda _: None)
    test_seconds = time.perf_counter() - t1
    _clear_keras()
    epochs_run = int(summary.get("epochs_run") or 0)
    n_train = int(summary.get("n_train_images") or n_train_images(cell.size, base.data.val_fraction))
    per_epoch = schedule.steps_per_epoch or pass_steps(n_train, base.data.patches_per_image, base.train.batch_size)
    return {
        "model": cell.model, "size": cell.size, "augment": on_off(cell.augment), "seed": cell.seed,
        **scores_from_metrics(metrics, data.class_names),
        "n_train": n_train,
        "n_val": summary.get("n_val_images"),
        "n_test": len(data.test),
        "epochs": epochs_run,
        "steps": epochs_run * per_epoch,
        "best_epoch": summary.get("best_epoch"),
        "train_seconds": round(train_seconds, 1),
        "test_seconds": round(test_seconds, 1),
        "wall_seconds": round(train_seconds + test_seconds, 1),
        "run_dir": str(Path("cells") / cell.name),
    }


def run_ablation(
    base_cfg: RunConfig,
    sizes: Sequence[int],
    augments: Sequence[bool] = (True, False),
    models: Sequence[str] | None = None,
    repeats: int = 1,
    out_dir: str | Path = "runs/ablation",
    budget: str = "steps",
    budget_steps: int | None = None,
    log: Callable[[str], None] = print,
    verbose: int | str = "auto",
) -> list[dict[str, Any]]:
    """Run (or finish) the grid; returns every row of ``ablation.csv``.

    Everything that can be wrong with the request (sizes larger than the pool,
    no labelled test images, a bad budget, other settings in ``out_dir``) is a
    :class:`UserInputError` raised before any cell runs.
    """
    from .models import MODELS, check_input_size, resolved_depth

    models = tuple(models or (base_cfg.model.model,))
    out_dir = Path(out_dir)
    if not sizes:
        raise UserInputError("--train-sizes: give at least one size, e.g. 5,10,25")
    if min(sizes) < 1:
        raise UserInputError(f"--train-sizes {','.join(map(str, sizes))}: sizes must be at least 1")
    if repeats < 1:
        raise UserInputError(f"--repeats {repeats}: must be at least 1")
    if not augments:
        raise UserInputError("--augment: give on, off or on,off")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserInputError(f"--ablation-models {','.join(unknown)}: unknown; choose from {', '.join(MODELS)}")
    if budget not in BUDGETS:
        raise UserInputError(f"--budget {budget}: choose one of {', '.join(BUDGETS)}")
    if budget_steps is not None and (budget != "steps" or budget_steps < 1):
        raise UserInputError(f"--budget-steps {budget_steps}: needs --budget steps and a value of at least 1")
    if base_cfg.data.train_size is not None:
        raise UserInputError("--train-size: the ablation sets it per cell; give --train-sizes instead")
    for model in models:
        check_input_size(base_cfg.data.patch_size, resolved_depth(replace_cfg(base_cfg, model={"model": model}).model),
                         f"--patch-size (model {model})")

    data = resolve_pool(base_cfg, log)
    too_big = [s for s in sizes if s > len(data.pool)]
    if too_big:
        held = f" after --holdout {base_cfg.data.holdout}" if base_cfg.data.holdout else ""
        raise UserInputError(
            f"--train-sizes {','.join(map(str, too_big))}: the dataset has only {len(data.pool)} labelled "
            f"training images{held} in {data.data_dir}"
        )
    total = total_step_budget(base_cfg, sizes, budget_steps) if budget == "steps" else None
    schedules = {s: cell_schedule(base_cfg, s, budget, total) for s in sizes}
    settings = grid_settings(base_cfg, data.data_dir, budget, schedules[max(sizes)].total_steps if total else None)
    check_settings(out_dir / "ablation.json", settings)

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "ablation.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
    cells = plan_grid(sizes, augments, models, repeats, base_cfg.train.seed)
    rows = {row_key(r): r for r in read_rows(out_dir / "ablation.csv")}
    test_names = ", ".join(s.image.name for s in data.test[:4]) + (" ..." if len(data.test) > 4 else "")
    budget_text = (f"{schedules[max(sizes)].total_steps} steps per cell ({schedules[max(sizes)].epochs} epochs x "
                   f"{schedules[max(sizes)].steps_per_epoch})" if budget == "steps"
                   else f"{base_cfg.train.epochs} epochs of one pass over the cell's patches")
    log(f"ablation: {len(cells)} cells ({len(set(sizes))} sizes x {len(set(augments))} augmentation x "
        f"{len(models)} model(s) x {repeats} repeat(s)); pool of {len(data.pool)} images; "
        f"test on {len(data.test)} image(s) ({test_names}); budget {budget_text}; output {out_dir}")
    note = (f"Test Dice on {len(data.test)} held-out image(s) (per-image mean), mean ± std over repeats; "
            f"budget: {budget_text}; data: {data.data_dir}.")

    title = f"test Dice on {len(data.test)} held-out image(s); bars: std over seeds"
    wall_times = [float(r["wall_seconds"]) for r in rows.values() if r.get("wall_seconds") is not None]
    for index, cell in enumerate(cells, 1):
        prefix = f"cell {index}/{len(cells)}: {cell.describe()}"
        if cell.key in rows:
            log(f"{prefix}: finished before, skip")
            continue
        remaining = sum(1 for c in cells[index - 1:] if c.key not in rows)
        eta = f" (about {format_duration(np.mean(wall_times) * remaining)} left)" if wall_times else ""
        log(f"{prefix} ...{eta}")
        row = run_cell(base_cfg, cell, schedules[cell.size], out_dir, data, log=log, verbose=verbose)
        rows[cell.key] = row
        wall_times.append(float(row["wall_seconds"]))
        write_reports(list(rows.values()), out_dir, data.class_names, note, title)
        log(f"{prefix}: test mean Dice {row['mean_dice']:.4f} ({format_duration(row['wall_seconds'])})")

    write_reports(list(rows.values()), out_dir, data.class_names, note, title)
    log(f"ablation done: {out_dir / 'ablation.csv'}, {out_dir / 'ablation_summary.csv'}, "
        f"{out_dir / 'ablation.md'}, {out_dir / 'ablation.png'}")
    return sort_rows(rows.values())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unet_tf.ablation ...``: ``train.py --ablation ...``."""
    from .cli.train import main as train_main

    return train_main(["--ablation", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
