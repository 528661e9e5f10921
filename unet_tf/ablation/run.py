"""Running the ablation grid: check the grid, resolve the images, train and test every cell.

:func:`run_ablation` takes the run's :class:`~unet_tf.config.RunConfig` and the
grid's :class:`~unet_tf.config.AblationConfig` as they are (train.py builds both
from its arguments). Each cell trains like one run with ``data.train_size`` N and
``train.seed`` S, is tested on the same held-out images (:func:`resolve_pool`)
and gets its ``ablation.csv`` row when done, so a rerun skips finished cells and
resumes an interrupted training.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from unet_tf import config as cfgmod
from unet_tf.ablation.folder import check_settings, format_duration, write_settings
from unet_tf.ablation.plan import (
    Cell,
    Schedule,
    cell_config,
    cell_schedule,
    n_train_images,
    on_off,
    plan_grid,
    total_step_budget,
)
from unet_tf.ablation.report import read_rows, row_key, scores_from_metrics, sort_rows, write_reports
from unet_tf.cluster import parse_scheduler
from unet_tf.config import (
    BUDGET_NAMES,
    MODEL_NAMES,
    AblationConfig,
    PredictConfig,
    RunConfig,
    replace_config,
    steps_per_pass,
)
from unet_tf.data.layouts import Sample, list_samples
from unet_tf.data.splits import labelled_pool, resolve_data
from unet_tf.errors import UserInputError
from unet_tf.models.build import check_input_size, resolved_depth
from unet_tf.models.file import load_model
from unet_tf.prediction.files import predict_files
from unet_tf.training.run import train

Log = Callable[[str], None]


# === Data: the pool of training images and the fixed test set ===


@dataclass(frozen=True)
class AblationData:
    """The labelled images subsets are drawn from, and the test images every cell is scored on."""

    data_dir: Path
    class_names: tuple[str, ...]
    pool: tuple[Sample, ...]
    test: tuple[Sample, ...]


def resolve_pool(cfg: RunConfig, log: Log = print) -> AblationData:
    """Training pool (labelled training images minus ``data.holdout``) and the labelled test images."""
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
                f"{data_dir}: no labelled test images for the ablation; use `data.holdout` N to keep the last N "
                "labelled training images as the test set"
            )
    return AblationData(data_dir, spec.class_names, tuple(pool), tuple(test))


# === The settings every cell shares ===


def grid_settings(cfg: RunConfig, data_dir: Path, budget: str, schedule_steps: int | None) -> dict:
    """What every cell shares: base settings minus what varies per cell, and the budget."""
    settings = cfgmod.to_dict(cfg)
    settings["data"]["data_dir"] = str(data_dir.resolve())
    for section, key in (
        ("data", "train_size"),
        ("model", "model"),
        ("train", "seed"),
        ("train", "out"),
        ("train", "resume"),
        ("train", "early_stopping_patience"),
    ):
        settings[section].pop(key, None)
    settings["data"]["augment"].pop("enabled", None)
    settings["budget"] = {"kind": budget, "total_steps": schedule_steps}
    return json.loads(json.dumps(settings))  # tuples -> lists, as read back from the file


# === One cell ===


def evaluate_cell(run_dir: Path, test: Sequence[Sample], log: Log = print) -> list[dict[str, Any]]:
    """Segment the test images with ``run_dir/best.keras`` into ``run_dir/test``; the evaluation rows."""
    model = load_model(run_dir / "best.keras")
    result = predict_files(model, test, run_dir / "test", PredictConfig(overlay=False), log=log)
    return result["metrics"]


def _clear_keras() -> None:
    """Free the graphs of the finished cell (a long grid builds many models in one process)."""
    keras.backend.clear_session()


def train_cell(
    base: RunConfig, cell: Cell, schedule: Schedule, run_dir: Path, log: Log = print, verbose: int | str = "auto"
) -> tuple[dict[str, Any], float]:
    """Train one cell into ``run_dir`` (resume an interrupted training, reuse a finished one).

    Returns:
        ``(summary, train_seconds)``: the run's ``summary.json`` content and the seconds spent here
        (the recorded training time for a reused run).
    """
    t0 = time.perf_counter()
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and (run_dir / "best.keras").is_file():
        log(f"  training finished before: testing {run_dir}")
        summary = json.loads(summary_path.read_text())
        return summary, float(summary.get("wall_seconds") or 0.0)
    resume = (run_dir / "backup").is_dir()
    if resume:
        log(f"  resuming the interrupted training in {run_dir}")
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # interrupted before its first epoch ended: start clean
    cfg = cell_config(base, cell, schedule, run_dir, resume)
    summary = train(cfg, resolve_data(cfg, log=lambda _: None), log=log, verbose=verbose).to_dict()
    return summary, time.perf_counter() - t0


def run_cell(
    base: RunConfig,
    cell: Cell,
    schedule: Schedule,
    out_dir: Path,
    data: AblationData,
    log: Log = print,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train (or resume, or reuse a finished training of) one cell, test it; its row."""
    run_dir = out_dir / "cells" / cell.name
    summary, train_seconds = train_cell(base, cell, schedule, run_dir, log, verbose)
    t1 = time.perf_counter()
    metrics = evaluate_cell(run_dir, data.test, log=lambda _: None)
    test_seconds = time.perf_counter() - t1
    _clear_keras()
    epochs_run = int(summary.get("epochs_run") or 0)
    n_train = int(summary.get("n_train_images") or n_train_images(cell.size, base.data.val_fraction))
    per_epoch = schedule.steps_per_epoch or steps_per_pass(n_train, base.data.patches_per_image, base.train.batch_size)
    return {
        "model": cell.model,
        "size": cell.size,
        "augment": on_off(cell.augment),
        "seed": cell.seed,
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


# === The grid ===


@dataclass(frozen=True)
class GridPlan:
    """A checked grid made concrete: the images, each size's schedule, the cells and the report texts."""

    data: AblationData
    schedules: Mapping[int, Schedule]
    cells: tuple[Cell, ...]
    settings: dict
    budget_text: str
    note: str
    title: str


def grid_models(cfg: RunConfig, grid: AblationConfig) -> tuple[str, ...]:
    """The models of the grid: ``grid.models``, or the run's own model when None."""
    return tuple(grid.models or (cfg.model.model,))


def check_grid(cfg: RunConfig, grid: AblationConfig) -> None:
    """Raise :class:`UserInputError` for a grid that cannot run, before any image is read."""
    sizes = tuple(grid.train_sizes)
    if not sizes:
        raise UserInputError("`ablation.train_sizes`: give at least one size, e.g. 5,10,25")
    if min(sizes) < 1:
        raise UserInputError(f"`ablation.train_sizes` {','.join(map(str, sizes))}: sizes must be at least 1")
    if grid.repeats < 1:
        raise UserInputError(f"`ablation.repeats` {grid.repeats}: must be at least 1")
    if not grid.augment:
        raise UserInputError("`ablation.augment`: give on, off or on,off")
    unknown = [m for m in grid_models(cfg, grid) if m not in MODEL_NAMES]
    if unknown:
        raise UserInputError(f"`ablation.models` {','.join(unknown)}: unknown; choose from {', '.join(MODEL_NAMES)}")
    if grid.budget not in BUDGET_NAMES:
        raise UserInputError(f"`ablation.budget` {grid.budget}: choose one of {', '.join(BUDGET_NAMES)}")
    if grid.budget_steps is not None and (grid.budget != "steps" or grid.budget_steps < 1):
        raise UserInputError(
            f"`ablation.budget_steps` {grid.budget_steps}: needs `ablation.budget` steps and a value of at least 1"
        )
    if cfg.data.train_size is not None:
        raise UserInputError("`data.train_size`: the ablation sets it per cell; give `ablation.train_sizes` instead")
    for model in grid_models(cfg, grid) if cfg.data.patch_size is not None else ():  # None: planned per run
        check_input_size(
            cfg.data.patch_size,
            resolved_depth(replace_config(cfg, model={"model": model}).model),
            f"`data.patch_size` (model {model})",
        )


def check_pool(cfg: RunConfig, grid: AblationConfig, data: AblationData) -> None:
    """Refuse sizes larger than the training pool."""
    too_big = [s for s in grid.train_sizes if s > len(data.pool)]
    if too_big:
        held = f" after `data.holdout` {cfg.data.holdout}" if cfg.data.holdout else ""
        raise UserInputError(
            f"`ablation.train_sizes` {','.join(map(str, too_big))}: the dataset has only {len(data.pool)} labelled "
            f"training images{held} in {data.data_dir}"
        )


def plan_ablation(cfg: RunConfig, grid: AblationConfig, out_dir: Path, log: Log = print) -> GridPlan:
    """Resolve the images and the schedules of a checked grid; refuse other settings in ``out_dir``."""
    sizes = tuple(grid.train_sizes)
    data = resolve_pool(cfg, log)
    check_pool(cfg, grid, data)
    total = total_step_budget(cfg, sizes, grid.budget_steps) if grid.budget == "steps" else None
    schedules = {s: cell_schedule(cfg, s, grid.budget, total) for s in sizes}
    largest = schedules[max(sizes)]
    settings = grid_settings(cfg, data.data_dir, grid.budget, largest.total_steps if total else None)
    check_settings(out_dir / "ablation.json", settings)
    budget_text = (
        f"{largest.total_steps} steps per cell ({largest.epochs} epochs x {largest.steps_per_epoch})"
        if grid.budget == "steps"
        else f"{cfg.train.epochs} epochs of one pass over the cell's patches"
    )
    note = (
        f"Test Dice on {len(data.test)} held-out image(s) (per-image mean), mean ± std over repeats; "
        f"budget: {budget_text}; data: {data.data_dir}."
    )
    title = f"test Dice on {len(data.test)} held-out image(s); bars: std over seeds"
    cells = tuple(plan_grid(sizes, grid.augment, grid_models(cfg, grid), grid.repeats, cfg.train.seed))
    return GridPlan(data, schedules, cells, settings, budget_text, note, title)


def describe_grid(cfg: RunConfig, grid: AblationConfig, plan: GridPlan, out_dir: Path) -> str:
    """The opening log line: the grid's shape, the pool, the test images, the budget and the output."""
    data = plan.data
    test_names = ", ".join(s.image.name for s in data.test[:4]) + (" ..." if len(data.test) > 4 else "")
    return (
        f"ablation: {len(plan.cells)} cells ({len(set(grid.train_sizes))} sizes x {len(set(grid.augment))} "
        f"augmentation x {len(grid_models(cfg, grid))} model(s) x {grid.repeats} repeat(s)); pool of "
        f"{len(data.pool)} images; test on {len(data.test)} image(s) ({test_names}); budget {plan.budget_text}; "
        f"output {out_dir}"
    )


def run_cells(
    cfg: RunConfig,
    plan: GridPlan,
    out_dir: Path,
    rows: dict[tuple, dict[str, Any]],
    log: Log = print,
    verbose: int | str = "auto",
) -> None:
    """Run every cell without a row in ``rows`` (adding its row), rewriting the reports after each."""
    cells, data = plan.cells, plan.data
    wall_times = [float(r["wall_seconds"]) for r in rows.values() if r.get("wall_seconds") is not None]
    for index, cell in enumerate(cells, 1):
        prefix = f"cell {index}/{len(cells)}: {cell.describe()}"
        if cell.key in rows:
            log(f"{prefix}: finished before, skip")
            continue
        remaining = sum(1 for c in cells[index - 1 :] if c.key not in rows)
        eta = f" (about {format_duration(np.mean(wall_times) * remaining)} left)" if wall_times else ""
        log(f"{prefix} ...{eta}")
        row = run_cell(cfg, cell, plan.schedules[cell.size], out_dir, data, log=log, verbose=verbose)
        rows[cell.key] = row
        wall_times.append(float(row["wall_seconds"]))
        write_reports(list(rows.values()), out_dir, data.class_names, plan.note, plan.title)
        log(f"{prefix}: test mean Dice {row['mean_dice']:.4f} ({format_duration(row['wall_seconds'])})")


def run_cells_on_cluster(
    cfg: RunConfig, plan: GridPlan, out_dir: Path, rows: dict[tuple, dict[str, Any]], scheduler: str, log: Log = print
) -> None:
    """:func:`run_cells` with every cell without a row a Dask task on ``scheduler`` (:mod:`.tasks`).

    Paths travel absolute (the data folder, ``out_dir``) so any worker that sees this file system finds them.
    """
    from unet_tf.ablation.isolated import PrefixLog
    from unet_tf.ablation.tasks import run_tasks

    cfg = replace_config(cfg, data={"data_dir": str(plan.data.data_dir.resolve())})
    data, out_dir, cells = resolve_pool(cfg, log=lambda _: None), out_dir.resolve(), plan.cells
    jobs = []
    for index, cell in enumerate(cells, 1):
        if cell.key in rows:
            log(f"cell {index}/{len(cells)}: {cell.describe()}: finished before, skip")
        else:
            args = (cfg, cell, plan.schedules[cell.size], out_dir, data, PrefixLog(f"[{cell.name}] "), 0)
            jobs.append((cell, f"cell-{cell.name}", args))

    def done(cell: Cell, row: dict[str, Any]) -> None:
        rows[cell.key] = row
        write_reports(list(rows.values()), out_dir, data.class_names, plan.note, plan.title)
        log(
            f"cell {cells.index(cell) + 1}/{len(cells)}: {cell.describe()}: test mean Dice {row['mean_dice']:.4f} "
            f"({format_duration(row['wall_seconds'])}; {len(rows)} of {len(cells)} cells done)"
        )

    run_tasks(scheduler, run_cell, jobs, done, log)


def run_ablation(
    cfg: RunConfig,
    grid: AblationConfig,
    out_dir: str | Path = "runs/ablation",
    log: Log = print,
    verbose: int | str = "auto",
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run (or finish) the grid; returns every row of ``ablation.csv``.

    Everything that can be wrong with the grid (sizes larger than the pool,
    no labelled test images, a bad budget, other settings in ``out_dir``) is a
    :class:`UserInputError` raised before any cell runs.

    Args:
        cfg: RunConfig, settings every cell shares (``data.train_size`` must be None).
        grid: AblationConfig, the grid: ``train_sizes`` (labelled images, training + validation;
            at least one), ``augment``, ``models`` (None: ``cfg.model.model``), ``repeats`` (seeds
            ``cfg.train.seed + r``), ``budget`` (``"steps"``: the same optimizer steps per cell;
            ``"epochs"``) and ``budget_steps`` (total steps per cell under ``steps``; None: from ``cfg``).
        out_dir: str or Path, output folder. Default ``"runs/ablation"``.
        log: callable taking one line of progress. Default ``print``.
        verbose: Keras ``fit`` verbosity of each cell (0 on Dask workers). Default ``"auto"``.
        scheduler: str or None. None: the cells run one after another here. ``local:N`` or a Dask
            scheduler's address (``tcp://HOST:8786``, :func:`unet_tf.cluster.dask_client`): each cell is a
            Dask task, one per worker at a time (:mod:`unet_tf.ablation.tasks`), with the same run folders,
            rows and resumption. Default None.

    Returns:
        list of dict, the rows of ``ablation.csv`` sorted by model, size, augmentation, seed.

    Example:
        >>> from unet_tf.config import AblationConfig, load_config
        >>> grid = AblationConfig(train_sizes=(5, 10, 25), repeats=3)
        >>> rows = run_ablation(load_config(None, dataset="tem"), grid, "runs/ablation-tem")  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    check_grid(cfg, grid)
    if scheduler:
        parse_scheduler(scheduler)  # a malformed address fails before anything is read or written
    plan = plan_ablation(cfg, grid, out_dir, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_settings(out_dir / "ablation.json", plan.settings)
    rows = {row_key(r): r for r in read_rows(out_dir / "ablation.csv")}
    log(describe_grid(cfg, grid, plan, out_dir))
    if scheduler:
        run_cells_on_cluster(cfg, plan, out_dir, rows, scheduler, log)
    else:
        run_cells(cfg, plan, out_dir, rows, log, verbose)
    write_reports(list(rows.values()), out_dir, plan.data.class_names, plan.note, plan.title)
    log(
        f"ablation done: {out_dir / 'ablation.csv'}, {out_dir / 'ablation_summary.csv'}, "
        f"{out_dir / 'ablation.md'}, {out_dir / 'ablation.png'}"
    )
    return sort_rows(rows.values())
