"""k-fold cross-validation of one configuration: K runs, each validated on the fold it did not train on.

The labelled training images (minus ``data.holdout``, which stays the test set) are
split into K folds by :func:`split_folds`, deterministic for ``train.seed`` and never
cutting what the validation split never cuts (:func:`unet_tf.data.splits.split_train_val`):
the pages of one stack and, for ordered layouts (time-lapse frames, serial sections),
the frames of one sequence go to one fold. Run ``k`` trains on every other fold and
validates (and picks ``best.keras``) on fold ``k``. Every fold sees the same images in
all (training + validation), so the fingerprint, the plan (patch size, depth) and the
object scale of the K models are the same, and their mean probability is one model
(:mod:`unet_tf.prediction.ensemble`).

Output folder (:func:`run_folds`)::

    folds.json            the base settings (a rerun into the folder must match them)
    fold-1 .. fold-K/     the run folder of each fold (unet_tf.training.run.train)
    folds.csv             one row per fold: validation scores of its best epoch, best epoch, seconds
    folds_summary.json    mean, std (ddof 1), min and max of each score over the folds
    ensemble/             with ``ensemble``: the test images predicted with the K models' mean probability

Running the same command again skips folds whose run folder is finished and
resumes an interrupted one; with ``scheduler`` every unfinished fold is a Dask task
(:mod:`unet_tf.ablation.tasks`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from unet_tf import config as cfgmod
from unet_tf.ablation.folder import check_settings, format_duration, write_settings
from unet_tf.ablation.report import nanstd, scores_from_metrics
from unet_tf.cluster import parse_scheduler
from unet_tf.config import PredictConfig, RunConfig, replace_config
from unet_tf.data.layouts import ORDERED_LAYOUTS, Sample, list_samples
from unet_tf.data.splits import TrainingData, labelled_pool, sample_group
from unet_tf.errors import UserInputError
from unet_tf.io.tables import format_table, nanmean, write_csv
from unet_tf.prediction.ensemble import load_ensemble
from unet_tf.prediction.files import predict_files
from unet_tf.training.run import train

Log = Callable[[str], None]
FOLD_COLUMNS_FIRST = ("fold", "n_train", "n_val", "best_epoch", "epochs")
FOLD_COLUMNS_LAST = ("seconds", "run_dir")


# === The split ===


def split_folds(samples: Sequence[Sample], k: int, seed: int = 0, ordered: bool = False) -> list[list[Sample]]:
    """``k`` disjoint folds covering ``samples``, each in name order; deterministic for ``seed``.

    Groups (a stack's pages; with ``ordered``, a sequence folder's frames) are never cut when
    there are at least ``k`` of them: whole groups, largest first (ties in ``seed`` order), each
    to the fold holding the fewest images so far (scikit-learn's GroupKFold). With fewer groups
    than folds the folds are ``k`` contiguous blocks of neighbours (as the one-sequence validation
    split is), numbered in ``seed`` order.

    Raises:
        UserInputError: ``k`` below 2, or fewer samples than folds.
    """
    samples = list(samples)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise UserInputError(f"`folds` {k!r}: must be a whole number of at least 2")
    if len(samples) < k:
        raise UserInputError(f"`folds` {k}: only {len(samples)} labelled training image(s); need at least one per fold")
    keys = [sample_group(s, ordered) for s in samples]
    groups = list(dict.fromkeys(keys))
    rng = np.random.default_rng([seed, 11])
    if len(groups) >= k:
        members = [[i for i, key in enumerate(keys) if key == g] for g in groups]
        order = sorted(rng.permutation(len(groups)).tolist(), key=lambda g: -len(members[g]))
        folds: list[list[int]] = [[] for _ in range(k)]
        for g in order:
            min(folds, key=len).extend(members[g])
    else:
        blocks = np.array_split(np.arange(len(samples)), k)
        folds = [blocks[j].tolist() for j in rng.permutation(k)]
    return [[samples[i] for i in sorted(fold)] for fold in folds]


def check_folds_config(cfg: RunConfig, folds: int) -> None:
    """Refuse settings that cross-validation replaces, before any image is read."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UserInputError(f"`folds` {folds!r}: must be a whole number of at least 2")
    if cfg.data.train_size is not None:
        raise UserInputError(
            "`data.train_size`: cross-validation trains on every labelled training image; leave it unset"
        )


def fold_data(cfg: RunConfig, fold: int, k: int, log: Log = print) -> TrainingData:
    """The :class:`TrainingData` of fold ``fold`` (1-based) of ``k``: the other folds train, this one validates."""
    data_dir, spec, pool, held = labelled_pool(cfg, log)
    folds = split_folds(pool, k, cfg.train.seed, cfg.data.dataset in ORDERED_LAYOUTS)
    val = folds[fold - 1]
    return TrainingData(spec, tuple(s for s in pool if s not in val), tuple(val), tuple(held), data_dir)


def describe_folds(folds: Sequence[Sequence[Sample]]) -> list[str]:
    """One log line per fold: the images it validates on."""
    lines = []
    for index, fold in enumerate(folds, 1):
        names = [s.image.name if s.page is None else f"{s.image.name} page {s.page + 1}" for s in fold]
        shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
        lines.append(f"fold {index}: validates on {len(fold)} image(s): {shown}")
    return lines


# === One fold ===


def fold_row(fold: int, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``folds.csv`` row of a finished fold from its ``summary.json``: ``val_<score>`` of the best epoch."""
    scores = {f"val_{name}": float(value) for name, value in dict(summary.get("best") or {}).items()}
    return {
        "fold": fold,
        "n_train": summary.get("n_train_images"),
        "n_val": summary.get("n_val_images"),
        "best_epoch": summary.get("best_epoch"),
        "epochs": summary.get("epochs_run"),
        **scores,
        "seconds": round(float(summary.get("wall_seconds") or 0.0), 1),
        "run_dir": f"fold-{fold}",
    }


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished run folder (it has ``best.keras`` too); None otherwise."""
    path = run_dir / "summary.json"
    if path.is_file() and (run_dir / "best.keras").is_file():
        return json.loads(path.read_text())
    return None


def run_fold(
    cfg: RunConfig, fold: int, k: int, out_dir: Path, log: Log = print, verbose: int | str = "auto"
) -> dict[str, Any]:
    """Train fold ``fold`` of ``k`` into ``out_dir/fold-<fold>`` (resume an interrupted one); its row.

    A module-level function of picklable arguments: the Dask task of a fold.
    """
    run_dir = Path(out_dir) / f"fold-{fold}"
    summary = finished_summary(run_dir)
    if summary is None:
        resume = (run_dir / "backup").is_dir()
        if resume:
            log(f"resuming the interrupted training in {run_dir}")
        elif run_dir.exists():
            shutil.rmtree(run_dir)  # interrupted before its first epoch ended: start clean
        run_cfg = replace_config(cfg, train={"out": str(run_dir), "resume": resume})
        summary = train(run_cfg, fold_data(run_cfg, fold, k, log=lambda _: None), log=log, verbose=verbose).to_dict()
        keras.backend.clear_session()
    return fold_row(fold, summary)


# === Reports ===


def score_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``val_*`` columns of the rows, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row if key.startswith("val_")))


def summarize_folds(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per score column (and ``best_epoch``, ``seconds``): ``mean``, ``std`` (ddof 1), ``min``, ``max``, NaN skipped."""
    out = {}
    for column in (*score_columns(rows), "best_epoch", "seconds"):
        values = [float(r[column]) for r in rows if r.get(column) is not None and not math.isnan(float(r[column]))]
        out[column] = {
            "mean": nanmean(values),
            "std": nanstd(values),
            "min": min(values) if values else math.nan,
            "max": max(values) if values else math.nan,
        }
    return out


def summary_table(summary: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """The summary as a printed table: score, ``mean ± std``, min, max."""
    rows = [
        {
            "score": name,
            "mean ± std": f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}",
            "min": s["min"],
            "max": s["max"],
        }
        for name, s in summary.items()
    ]
    return format_table(rows, ("score", "mean ± std", "min", "max"), digits)


def write_fold_reports(rows: Sequence[Mapping[str, Any]], out_dir: Path, k: int) -> dict[str, Any]:
    """``folds.csv`` (rows by fold) and ``folds_summary.json``; returns the summary file's content."""
    rows = sorted(rows, key=lambda r: int(r["fold"]))
    columns = [*FOLD_COLUMNS_FIRST, *score_columns(rows), *FOLD_COLUMNS_LAST]
    write_csv(out_dir / "folds.csv", rows, columns)
    content = {"folds": k, "finished": len(rows), "metrics": summarize_folds(rows)}
    write_summary_file(out_dir, content)
    return content


def write_summary_file(out_dir: Path, content: Mapping[str, Any]) -> None:
    """``folds_summary.json``: ``content`` with NaN written as null (strict JSON)."""

    def finite(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: finite(v) for key, v in value.items()}
        return None if isinstance(value, float) and math.isnan(value) else value

    write_settings(out_dir / "folds_summary.json", finite(content))


# === The cross-validation ===


def folds_settings(cfg: RunConfig, data_dir: Path, k: int) -> dict:
    """What every fold shares (the base settings minus the run folder), the data folder and K."""
    settings = cfgmod.to_dict(cfg)
    settings["data"]["data_dir"] = str(data_dir.resolve())
    for key in ("out", "resume"):
        settings["train"].pop(key, None)
    settings["folds"] = k
    return json.loads(json.dumps(settings))


def test_samples(cfg: RunConfig, data_dir: Path, held: Sequence[Sample]) -> list[Sample]:
    """What the ensemble predicts: the ``data.holdout`` images, else the dataset's test split (maybe none)."""
    if held:
        return list(held)
    try:
        return list(list_samples(cfg.data.dataset, data_dir, "test"))
    except UserInputError:
        return []


def predict_ensemble(out_dir: Path, test: Sequence[Sample], log: Log = print) -> float | None:
    """Predict ``test`` with the mean probability of the folds' ``best.keras`` into ``out_dir/ensemble``;
    the mean foreground Dice where the test images have labels (else None)."""
    if not test:
        log("ensemble: no test images (`data.holdout` N keeps the last N labelled images as one); nothing predicted")
        return None
    model = load_ensemble(out_dir)
    result = predict_files(model, test, out_dir / "ensemble", PredictConfig(overlay=False), log=lambda _: None)
    dice = scores_from_metrics(result["metrics"], model.info.class_names)["mean_dice"] if result["metrics"] else None
    said = "" if dice is None or math.isnan(dice) else f"; test mean Dice {dice:.4f}"
    log(f"ensemble of {len(model.models)} folds: {len(result['done'])} test image(s) in {out_dir / 'ensemble'}{said}")
    return dice


def start_folder(cfg: RunConfig, k: int, out_dir: Path, log: Log = print) -> tuple[Path, list[Sample]]:
    """Split the pool, refuse other settings in ``out_dir``, write ``folds.json``, say the folds;
    returns (the data folder, the ``data.holdout`` images)."""
    data_dir, _, pool, held = labelled_pool(cfg, log)
    split = split_folds(pool, k, cfg.train.seed, cfg.data.dataset in ORDERED_LAYOUTS)
    settings = folds_settings(cfg, data_dir, k)
    check_settings(out_dir / "folds.json", settings, "a cross-validation")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_settings(out_dir / "folds.json", settings)
    log(
        f"cross-validation: {k} folds of {len(pool)} labelled training images (seed {cfg.train.seed}); output {out_dir}"
    )
    for line in describe_folds(split):
        log(line)
    return data_dir, list(held)


def finished_rows(out_dir: Path, k: int, log: Log = print) -> dict[int, dict[str, Any]]:
    """Rows of the folds whose run folder is finished (said for each: they are skipped)."""
    rows = {}
    for fold in range(1, k + 1):
        summary = finished_summary(out_dir / f"fold-{fold}")
        if summary is not None:
            rows[fold] = fold_row(fold, summary)
            log(f"fold {fold}/{k}: finished before, skip")
    return rows


def run_folds_here(
    cfg: RunConfig, pending: Sequence[int], k: int, out_dir: Path, rows: dict, log: Log, verbose: int | str
) -> None:
    """Train the ``pending`` folds one after another in this process, rewriting the reports after each."""
    for fold in pending:
        log(f"fold {fold}/{k} ...")
        rows[fold] = run_fold(cfg, fold, k, out_dir, log, verbose)
        write_fold_reports(list(rows.values()), out_dir, k)
        log(f"fold {fold}/{k}: {_fold_result(rows[fold])}")


def run_folds_on_cluster(
    cfg: RunConfig, pending: Sequence[int], k: int, out_dir: Path, rows: dict, data_dir: Path, scheduler: str, log: Log
) -> None:
    """The ``pending`` folds as Dask tasks on ``scheduler`` (:mod:`.tasks`), paths made absolute for the workers."""
    from unet_tf.ablation.isolated import PrefixLog
    from unet_tf.ablation.tasks import run_tasks

    cfg = replace_config(cfg, data={"data_dir": str(data_dir.resolve())})
    out_dir = out_dir.resolve()
    jobs = [(fold, f"fold-{fold}", (cfg, fold, k, out_dir, PrefixLog(f"[fold-{fold}] "), 0)) for fold in pending]

    def done(fold: int, row: dict[str, Any]) -> None:
        rows[fold] = row
        write_fold_reports(list(rows.values()), out_dir, k)
        log(f"fold {fold}/{k}: {_fold_result(row)} ({len(rows)} of {k} folds done)")

    run_tasks(scheduler, run_fold, jobs, done, log)


def _fold_result(row: Mapping[str, Any]) -> str:
    dice = row.get("val_dice")
    shown = "validation Dice unknown" if dice is None or math.isnan(dice) else f"validation Dice {dice:.4f}"
    return f"{shown} at epoch {row['best_epoch']} ({format_duration(row['seconds'])} of training)"


def run_folds(
    cfg: RunConfig,
    folds: int,
    out_dir: str | Path = "runs/folds",
    log: Log = print,
    verbose: int | str = "auto",
    scheduler: str | None = None,
    ensemble: bool = False,
) -> dict[str, Any]:
    """Cross-validate ``cfg`` over ``folds`` folds (or finish doing so); returns ``folds_summary.json``'s content.

    Args:
        cfg: RunConfig, the settings of every fold (``data.train_size`` must be None; ``data.val_fraction``
            is not used: the fold validates).
        folds: int, K >= 2, at most the number of labelled training images (after ``data.holdout``).
        out_dir: str or Path, the parent folder of ``fold-1`` .. ``fold-K``. Default ``"runs/folds"``.
        log: callable taking one line. Default ``print``.
        verbose: Keras ``fit`` verbosity of each fold here (0 on Dask workers). Default ``"auto"``.
        scheduler: str or None. None: the folds train one after another here; ``local:N`` or a scheduler
            address: each fold is a Dask task, one per worker (:mod:`unet_tf.ablation.tasks`). Default None.
        ensemble: bool. Afterwards, predict the test images (``data.holdout``, else the dataset's test
            split) with the mean probability of the K ``best.keras`` into ``out_dir/ensemble``. Default False.

    Returns:
        dict: ``folds`` (K), ``finished``, ``metrics`` (score -> mean, std, min, max) and, with ``ensemble``,
        ``ensemble`` (``test_images``, ``mean_dice``).

    Example:
        >>> from unet_tf.config import load_config
        >>> summary = run_folds(load_config(None, dataset="tem"), 5, "runs/folds-tem")  # doctest: +SKIP
        >>> summary["metrics"]["val_dice"]["mean"]  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    check_folds_config(cfg, folds)
    if scheduler:
        parse_scheduler(scheduler)  # a malformed address fails before anything is read or written
    data_dir, held = start_folder(cfg, folds, out_dir, log)
    rows = finished_rows(out_dir, folds, log)
    pending = [fold for fold in range(1, folds + 1) if fold not in rows]
    if scheduler:
        run_folds_on_cluster(cfg, pending, folds, out_dir, rows, data_dir, scheduler, log)
    else:
        run_folds_here(cfg, pending, folds, out_dir, rows, log, verbose)
    content = write_fold_reports(list(rows.values()), out_dir, folds)
    log(f"cross-validation over {folds} folds (mean ± std, ddof 1):\n{summary_table(content['metrics'])}")
    if ensemble:
        test = test_samples(cfg, data_dir, held)
        content["ensemble"] = {"test_images": len(test), "mean_dice": predict_ensemble(out_dir, test, log)}
        write_summary_file(out_dir, content)
    log(f"cross-validation done: {out_dir / 'folds.csv'}, {out_dir / 'folds_summary.json'}")
    return content
