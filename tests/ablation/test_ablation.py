"""Training-set-size ablation: the grid, the budget, the tables, resuming, and one tiny real grid."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from unet_tf.ablation import (
    Cell,
    cell_schedule,
    markdown_table,
    n_train_images,
    plan_grid,
    resolve_pool,
    row_columns,
    run_ablation,
    scores_from_metrics,
    summarize,
    total_step_budget,
    write_plot,
)
from unet_tf.ablation import run as ablation
from unet_tf.cli.train import main as train_main
from unet_tf.config import AblationConfig, RunConfig, steps_per_pass
from unet_tf.config import replace_config as replace_cfg
from unet_tf.errors import UserInputError
from unet_tf.evaluation.semantic import Evaluator
from unet_tf.synthetic import write_tem_dataset
from unet_tf.synthetic.shapes import TEM_CLASS_NAMES
from unet_tf.training.run_folder import RunSummary

FOREGROUND = TEM_CLASS_NAMES[1:]


@pytest.fixture
def tem_dir(tem_dir_factory):
    """The session's synthetic TEM folder with 4 training images (conftest.py); read only."""
    return tem_dir_factory(4)


def tiny_args(tem_dir, out, *extra):
    return [
        "--dataset",
        "tem",
        "--data-dir",
        str(tem_dir),
        "--base-filters",
        "4",
        "--depth",
        "2",
        "--patch-size",
        "64",
        "--patches-per-image",
        "2",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--ablation",
        "--train-sizes",
        "3",  # one size: FakeRuns below check what several sizes train on
        "--augment",
        "on,off",
        *extra,
    ]


@pytest.fixture(scope="module")
def grid(tem_dir_factory, tmp_path_factory):
    """The tiny real grid (1 size x augmentation on/off x 1 seed) run once through train.py."""
    tem_dir = tem_dir_factory(4)
    out = tmp_path_factory.mktemp("ablation") / "out"
    assert train_main(tiny_args(tem_dir, out)) == 0
    return out


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tiny_cfg(tem_dir, **train):
    return replace_cfg(
        RunConfig(),
        data={"dataset": "tem", "data_dir": str(tem_dir), "patch_size": 64, "patches_per_image": 2},
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, **train},
    )


# === Pure parts ===


def test_plan_grid_crosses_every_setting_with_one_seed_per_repeat():
    cells = plan_grid([10, 5, 5], [True, False], ["unet", "resunet"], repeats=2, base_seed=7)
    assert len(cells) == 2 * 2 * 2 * 2 == len(set(cells))
    assert {c.seed for c in cells} == {7, 8}
    assert all(c.seed == 7 + c.repeat for c in cells)
    combos = {(c.model, c.size, c.augment) for c in cells}
    assert combos == {(m, s, a) for m in ("unet", "resunet") for s in (5, 10) for a in (True, False)}
    # repeat outermost: a whole curve for seed 7 before any seed-8 cell
    assert [c.seed for c in cells] == [7] * 8 + [8] * 8
    assert Cell("unet", 10, False, 8, 1).name == "unet-n10-augoff-s8"
    assert Cell("unet", 10, True, 8, 1).key == ("unet", 10, "on", 8)


def test_steps_budget_gives_every_size_the_same_total_steps(tem_dir):
    cfg = tiny_cfg(tem_dir, epochs=4, steps_per_epoch=5)
    total = total_step_budget(cfg, [1, 5, 300])
    assert total == 20
    schedules = [cell_schedule(cfg, size, "steps", total) for size in (1, 5, 300)]
    assert {(s.epochs, s.steps_per_epoch, s.total_steps) for s in schedules} == {(4, 5, 20)}
    assert total_step_budget(cfg, [1, 5], budget_steps=7) == 7
    odd = cell_schedule(cfg, 5, "steps", 7)  # 4 epochs cannot split 7 steps: round up, same for all
    assert odd.epochs * odd.steps_per_epoch == odd.total_steps == 8
    assert cell_schedule(cfg, 5, "steps", 2).epochs == 2  # fewer steps than epochs: 1 step per epoch
    # no steps per epoch in the base: epochs passes over the largest size's training images
    free = tiny_cfg(tem_dir, epochs=3, steps_per_epoch=None)
    assert total_step_budget(free, [2, 10]) == 3 * steps_per_pass(n_train_images(10, 0.2), 2, 2) == 3 * 8


def test_epochs_budget_is_one_pass_over_each_cells_patches(tem_dir):
    cfg = tiny_cfg(tem_dir, epochs=3)
    assert n_train_images(5, 0.2) == 4 and n_train_images(1, 0.2) == 1 and n_train_images(10, 0.0) == 10
    small, large = cell_schedule(cfg, 5, "epochs"), cell_schedule(cfg, 50, "epochs")
    assert small.steps_per_epoch is None and small.epochs == large.epochs == 3
    assert small.total_steps == 3 * math.ceil(4 * 2 / 2) and large.total_steps == 3 * math.ceil(40 * 2 / 2)


def test_scores_come_from_the_per_image_mean_rows():
    names = ("background", "a", "b")
    t1 = np.array([[0, 1], [1, 2]])
    p1 = np.array([[0, 1], [2, 2]])  # a: 2/3, b: 2/3, acc 3/4
    t2 = np.array([[1, 1], [0, 0]])
    p2 = np.array([[1, 0], [0, 0]])  # a: 2/3, b: absent (nan), acc 3/4
    evaluator = Evaluator(names)
    evaluator.add("x", t1, p1)
    evaluator.add("y", t2, p2)
    rows = evaluator.rows()
    scores = scores_from_metrics(rows, names)
    assert scores["dice_a"] == pytest.approx(2 / 3) and scores["dice_b"] == pytest.approx(2 / 3)
    assert scores["mean_dice"] == pytest.approx(2 / 3) and scores["pixel_accuracy"] == pytest.approx(0.75)
    assert math.isnan(scores_from_metrics([], names)["mean_dice"])


def fake_rows():
    rows = []
    for size, dices in ((2, (0.5, 0.7)), (8, (0.8, 0.9))):
        for seed, d in enumerate(dices):
            for aug, shift in (("on", 0.0), ("off", -0.1)):
                rows.append(
                    {
                        "model": "unet",
                        "size": size,
                        "augment": aug,
                        "seed": seed,
                        "dice_a": d + shift,
                        "dice_b": float("nan"),
                        "mean_dice": d + shift,
                        "pixel_accuracy": 0.9,
                        "steps": 4,
                        "wall_seconds": 2.0,
                    }
                )
    return rows


def test_summary_table_and_plot(tmp_path):
    import matplotlib.image

    summary = summarize(fake_rows())
    assert [(e["augment"], e["size"], e["runs"]) for e in summary] == [
        ("on", 2, 2),
        ("on", 8, 2),
        ("off", 2, 2),
        ("off", 8, 2),
    ]
    first = summary[0]
    assert first["mean_dice_mean"] == pytest.approx(0.6)
    assert first["mean_dice_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert math.isnan(first["dice_b_mean"]) and first["steps"] == 4
    table = markdown_table(summary)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 4 and "mean Dice" in lines[0] and "Dice a" in lines[0]
    assert "| unet | on | 2 | 2 | 0.600 ± 0.141 |" in table
    png = write_plot(fake_rows(), tmp_path / "a.png")
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


# === Refusals before anything runs ===


def test_impossible_size_is_refused_before_any_cell(tem_dir, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(UserInputError, match=r"`ablation.train_sizes` 99: the dataset has only 4 labelled"):
        run_ablation(tiny_cfg(tem_dir), AblationConfig(train_sizes=(2, 99)), out_dir=out)
    assert not out.exists()
    assert train_main(tiny_args(tem_dir, out)[:-4] + ["--train-sizes", "2,99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --train-sizes 99") and not out.exists()


@pytest.mark.parametrize(
    "grid, message",
    [
        (AblationConfig(), r"`ablation.train_sizes`: give at least one size"),
        (AblationConfig(train_sizes=(0, 2)), r"`ablation.train_sizes` 0,2: sizes must be at least 1"),
        (AblationConfig(train_sizes=(2,), repeats=0), r"`ablation.repeats` 0: must be at least 1"),
        (AblationConfig(train_sizes=(2,), augment=()), r"`ablation.augment`: give on, off or on,off"),
        (AblationConfig(train_sizes=(2,), models=("unet", "vnet")), r"`ablation.models` vnet: unknown"),
        (AblationConfig(train_sizes=(2,), budget="hours"), r"`ablation.budget` hours: choose one of steps, epochs"),
        (
            AblationConfig(train_sizes=(2,), budget="epochs", budget_steps=5),
            r"`ablation.budget_steps` 5: needs `ablation.budget` steps",
        ),
    ],
)
def test_a_bad_grid_names_the_setting_before_any_image_is_read(tmp_path, grid, message):
    cfg = tiny_cfg(tmp_path / "no such folder")
    with pytest.raises(UserInputError, match=message):
        run_ablation(cfg, grid, out_dir=tmp_path / "out")
    with pytest.raises(UserInputError, match=r"`data.train_size`: the ablation sets it per cell"):
        run_ablation(replace_cfg(cfg, data={"train_size": 2}), AblationConfig(train_sizes=(2,)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_holdout_leaves_the_pool_before_subsets_are_drawn(tem_dir, tmp_path):
    data = resolve_pool(replace_cfg(tiny_cfg(tem_dir), data={"holdout": 1}), log=lambda _: None)
    assert [s.image.name for s in data.pool] == ["raw_00.tif", "raw_01.tif", "raw_02.tif"]
    assert [s.image.name for s in data.test] == ["raw_03.tif"]
    plain = resolve_pool(tiny_cfg(tem_dir), log=lambda _: None)
    assert len(plain.pool) == 4 and [s.image.parent.name for s in plain.test] == ["test"]
    with pytest.raises(UserInputError, match=r"only 3 labelled training images after `data.holdout` 1"):
        run_ablation(
            replace_cfg(tiny_cfg(tem_dir), data={"holdout": 1}),
            AblationConfig(train_sizes=(4,)),
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_no_labelled_test_images_suggests_holdout(tmp_path):
    write_tem_dataset(tmp_path / "tem", n_train=2, n_test=0, size=64)
    with pytest.raises(UserInputError, match=r"no labelled test images.*`data.holdout`"):
        run_ablation(tiny_cfg(tmp_path / "tem"), AblationConfig(train_sizes=(1,)), out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# === Resuming, with stand-ins for training and testing ===


class FakeRuns:
    """Stand-ins for train() and evaluate_cell(): record calls, write the files a finished run has."""

    def __init__(self, interrupt_at=None):
        self.configs = []
        self.interrupt_at = interrupt_at

    def train(self, cfg, data, log=print, verbose="auto"):
        self.configs.append(cfg)
        run_dir = Path(cfg.train.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        if len(self.configs) == self.interrupt_at:
            (run_dir / "backup").mkdir()  # as BackupAndRestore leaves it after an epoch
            raise KeyboardInterrupt
        (run_dir / "best.keras").write_text("")
        summary = RunSummary(
            run_dir=run_dir,
            best_epoch=1,
            epochs_run=cfg.train.epochs,
            best={"dice": 0.5},
            wall_seconds=0.5,
            train_patches_per_second=None,
            n_train_images=len(data.train),
            n_val_images=len(data.val),
            parameters=0,
            precision="float32",
            onednn=None,
            tensorflow="",
            keras="",
        )
        (run_dir / "summary.json").write_text(json.dumps(summary.to_dict()))
        return summary

    @staticmethod
    def evaluate_cell(run_dir, test, log=print):
        return [{"image": "mean", "class": c, "dice": 0.5, "pixel_accuracy": 0.8} for c in TEM_CLASS_NAMES]


def test_interrupted_grid_resumes_and_skips_finished_cells(tem_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cfg, grid, logs = tiny_cfg(tem_dir), AblationConfig(train_sizes=(1, 3)), []
    first = FakeRuns(interrupt_at=2)
    monkeypatch.setattr(ablation, "train", first.train)
    monkeypatch.setattr(ablation, "evaluate_cell", first.evaluate_cell)
    with pytest.raises(KeyboardInterrupt):
        run_ablation(cfg, grid, out_dir=out, log=logs.append)
    assert len(read_csv(out / "ablation.csv")) == 1
    stale = out / "cells" / "unet-n3-augon-s0"  # interrupted before its first epoch ended
    stale.mkdir(parents=True)
    (stale / "history.csv").write_text("epoch\n")

    again = FakeRuns()
    monkeypatch.setattr(ablation, "train", again.train)
    rows = run_ablation(cfg, grid, out_dir=out, log=logs.append)
    assert len(rows) == 4 and len(read_csv(out / "ablation.csv")) == 4
    trained = [(c.data.train_size, c.data.augment.enabled, c.train.resume) for c in again.configs]
    assert trained == [(1, False, True), (3, True, False), (3, False, False)]
    assert not (stale / "history.csv").exists()
    assert any("cell 1/4: unet n=1 aug=on seed=0: finished before, skip" in line for line in logs)
    assert any(line.startswith("cell 2/4") and "left)" in line for line in logs)
    # equal budget: the same epochs x steps per epoch for every cell, early stopping off
    assert {(c.train.epochs, c.train.steps_per_epoch) for c in first.configs + again.configs} == {(2, 3)}
    assert all(c.train.early_stopping_patience >= c.train.epochs for c in again.configs)
    assert {r["steps"] for r in rows} == {6}

    # same grid again: nothing trains; other base settings in the same folder are refused
    third = FakeRuns()
    monkeypatch.setattr(ablation, "train", third.train)
    run_ablation(cfg, grid, out_dir=out, log=logs.append)
    assert third.configs == []
    with pytest.raises(UserInputError, match="other settings.*train.epochs"):
        run_ablation(tiny_cfg(tem_dir, epochs=5), grid, out_dir=out, log=logs.append)


def test_epochs_budget_uses_one_pass_per_epoch(tem_dir, tmp_path, monkeypatch):
    runs = FakeRuns()
    monkeypatch.setattr(ablation, "train", runs.train)
    monkeypatch.setattr(ablation, "evaluate_cell", runs.evaluate_cell)
    grid = AblationConfig(train_sizes=(2, 4), augment=(True,), budget="epochs")
    rows = run_ablation(tiny_cfg(tem_dir, epochs=2), grid, out_dir=tmp_path / "o", log=lambda _: None)
    assert [c.train.steps_per_epoch for c in runs.configs] == [None, None]
    assert [c.train.epochs for c in runs.configs] == [2, 2]
    assert [(r["size"], r["n_train"], r["steps"]) for r in rows] == [(2, 1, 2), (4, 3, 6)]


# === The tiny real grid through train.py ===


@pytest.mark.slow  # the real grid: two tiny trainings and tests through train.py
def test_grid_writes_a_row_per_cell_and_the_reports(grid, tem_dir):
    import matplotlib.image

    rows = read_csv(grid / "ablation.csv")
    assert list(rows[0]) == list(row_columns(TEM_CLASS_NAMES))
    assert sorted((r["size"], r["augment"], r["seed"], r["model"]) for r in rows) == [
        ("3", "off", "0", "unet"),
        ("3", "on", "0", "unet"),
    ]
    for row in rows:
        dices = [float(row[f"dice_{c}"]) for c in FOREGROUND]
        assert all(math.isnan(d) or 0 <= d <= 1 for d in dices)
        finite = [d for d in dices if not math.isnan(d)]
        assert (
            float(row["mean_dice"]) == pytest.approx(np.mean(finite)) if finite else math.isnan(float(row["mean_dice"]))
        )
        assert 0 <= float(row["pixel_accuracy"]) <= 1
        assert row["steps"] == "2" and row["n_test"] == "1" and int(row["n_train"]) == int(row["size"]) - 1
        assert float(row["wall_seconds"]) >= float(row["train_seconds"]) > 0
        run = grid / row["run_dir"]
        assert (run / "best.keras").is_file() and (run / "test" / "metrics.csv").is_file()
        assert (run / "test" / "raw_00_mask.tif").is_file() and not list((run / "test").glob("*_overlay.png"))
        config = json.loads((run / "config.json").read_text())
        assert config["data"]["train_size"] == int(row["size"])
        assert config["data"]["augment"]["enabled"] == (row["augment"] == "on")
        assert config["resolved"]["test_images"] == []  # the test image is never trained on
        used = config["resolved"]["train_images"] + config["resolved"]["val_images"]
        assert len(used) == int(row["size"]) and {Path(p).parent.name for p in used} == {"train"}
    image = matplotlib.image.imread(grid / "ablation.png")
    assert image.ndim == 3 and image.shape[0] > 100
    assert len(read_csv(grid / "ablation_summary.csv")) == 2
    assert len((grid / "ablation.md").read_text().strip().splitlines()) == 2 + 2 + 2  # note, blank, header, rule, rows


@pytest.mark.slow  # the real grid: two tiny trainings and tests through train.py
def test_same_command_again_skips_every_cell(grid, tem_dir, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    before = (grid / "ablation.csv").read_text()
    monkeypatch.setattr(ablation, "train", refuse)
    monkeypatch.setattr(ablation, "evaluate_cell", refuse)
    assert train_main(tiny_args(tem_dir, grid)) == 0
    out = capsys.readouterr().out
    assert out.count("finished before, skip") == 2 and "cell 2/2" in out
    assert (grid / "ablation.csv").read_text() == before


@pytest.mark.slow  # the real grid: two tiny trainings and tests through train.py
def test_cell_interrupted_while_testing_is_tested_again_not_retrained(grid, tem_dir, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(grid, out)
    rows = read_csv(out / "ablation.csv")
    dropped = rows.pop(1)
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dropped))
        writer.writeheader()
        writer.writerows(rows)
    metrics = out / dropped["run_dir"] / "test" / "metrics.csv"
    metrics.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("training finished before; only testing should run")

    monkeypatch.setattr(ablation, "train", refuse)
    assert train_main(tiny_args(tem_dir, out)) == 0
    again = {(r["size"], r["augment"]): r for r in read_csv(out / "ablation.csv")}
    assert len(again) == 2 and metrics.is_file()
    restored = again[(dropped["size"], dropped["augment"])]
    assert restored["mean_dice"] == dropped["mean_dice"] and restored["steps"] == dropped["steps"]
