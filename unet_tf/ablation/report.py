"""Rows of the ablation (one per cell) and what is made of them: CSV, summary, Markdown table, plot.

``ablation.csv`` holds one row per cell; ``summarize`` groups the rows per
model, augmentation and size (mean and std over repeats, NaN skipped);
``markdown_table`` and ``write_plot`` show the summary. The NaN-skipping mean,
the column namer and the CSV writer are :mod:`unet_tf.io.tables`'.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from unet_tf.io.tables import nanmean, score_column, write_csv
from unet_tf.io.writers import atomic_path

ROW_KEY = ("model", "size", "augment", "seed")
_INT_COLUMNS = {"size", "seed", "n_train", "n_val", "n_test", "epochs", "steps", "best_epoch"}
_TEXT_COLUMNS = {"model", "augment", "run_dir"}
_TAIL_COLUMNS = (
    "mean_dice",
    "pixel_accuracy",
    "n_train",
    "n_val",
    "n_test",
    "epochs",
    "steps",
    "best_epoch",
    "train_seconds",
    "test_seconds",
    "wall_seconds",
    "run_dir",
)


# === NaN-skipping statistics (the mean: unet_tf.io.tables.nanmean) ===


def nanstd(values: Iterable[float | None]) -> float:
    """Sample standard deviation (ddof 1) of the values that are neither None nor NaN; NaN for fewer than two."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.std(kept, ddof=1)) if len(kept) > 1 else math.nan


# === Rows: one per cell ===


def column_name(class_name: str) -> str:
    """``dice_<class>`` with non-word characters replaced (as the training metrics do)."""
    return score_column("dice", class_name)


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
    columns = list(row_columns(class_names))
    columns += [k for row in rows for k in row if k not in columns]  # keep columns of older rows
    return write_csv(path, sort_rows(rows), list(dict.fromkeys(columns)))


def sort_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``rows`` sorted by model, size, augmentation, seed."""
    return sorted((dict(r) for r in rows), key=row_key)


def row_key(row: Mapping[str, Any]) -> tuple[str, int, str, int]:
    """(model, size, augmentation, seed): the row's cell (``Cell.key``) and its place in ``ablation.csv``."""
    return (str(row["model"]), int(row["size"]), str(row["augment"]), int(row["seed"]))


# === Summary and table ===


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
    for (model, augment, size), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "on", kv[0][2])
    ):
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
    classes = [k[len("dice_") : -len("_mean")] for k in summary[0] if k.startswith("dice_") and k.endswith("_mean")]
    header = ["model", "augment", "images", "runs", "mean Dice", *(f"Dice {c}" for c in classes), "pixel accuracy"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---", "--:", "--:"] + ["--:"] * (len(header) - 4)) + "|",
    ]
    for e in summary:
        cells = [
            str(e["model"]),
            str(e["augment"]),
            str(e["size"]),
            str(e["runs"]),
            _pm(e["mean_dice_mean"], e["mean_dice_std"]),
        ]
        cells += [_pm(e[f"dice_{c}_mean"], e[f"dice_{c}_std"]) for c in classes]
        cells.append(_pm(e.get("pixel_accuracy_mean", math.nan), e.get("pixel_accuracy_std", math.nan)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# === Plot ===


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
        label = f"{model}, augmentation {augment}" if several_models else f"augmentation {augment}"
        _plot_line(ax, summary, rows, (model, augment), shift, label)
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


def _plot_line(
    ax,
    summary: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    group: tuple[str, str],
    shift: float,
    label: str,
) -> None:
    """One model/augmentation: the summary means with std bars, each run as a faint dot (x scaled by ``shift``)."""
    entries = [e for e in summary if (e["model"], e["augment"]) == group]
    x = np.array([e["size"] for e in entries], float) * shift
    y = np.array([e["mean_dice_mean"] for e in entries])
    err = np.nan_to_num(np.array([e["mean_dice_std"] for e in entries]))
    line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label, linestyle="-" if group[1] == "on" else "--")
    runs = [r for r in rows if (r["model"], r["augment"]) == group]
    ax.scatter(
        [int(r["size"]) * shift for r in runs],
        [_float(r.get("mean_dice")) for r in runs],
        s=10,
        alpha=0.35,
        color=line[0].get_color(),
    )


def write_reports(
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    class_names: Sequence[str],
    note: str = "",
    title: str | None = None,
) -> None:
    """``ablation.csv``, ``ablation_summary.csv``, ``ablation.md`` and ``ablation.png``."""
    write_rows(out_dir / "ablation.csv", rows, class_names)
    if not rows:
        return
    summary = summarize(rows)
    write_csv(out_dir / "ablation_summary.csv", summary, list(dict.fromkeys(k for e in summary for k in e)))
    with atomic_path(out_dir / "ablation.md") as tmp:
        tmp.write_text((note + "\n\n" if note else "") + markdown_table(summary), encoding="utf-8")
    write_plot(rows, out_dir / "ablation.png", title)
