"""k-fold cross-validation: the split, the reports, resuming (stand-in training), a tiny real run with the ensemble."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from unet_tf.ablation import folds as folds_mod
from unet_tf.ablation.folds import run_folds, split_folds, summarize_folds
from unet_tf.cli.train import main as train_main
from unet_tf.config import RunConfig, replace_config
from unet_tf.data.layouts import Sample
from unet_tf.errors import UserInputError
from unet_tf.training.run_folder import RunSummary


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tiny_cfg(tem_dir, **train):
    return replace_config(
        RunConfig(),
        data={"dataset": "tem", "data_dir": str(tem_dir), "patch_size": 64, "patches_per_image": 2},
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "precision": "float32", **train},
    )


# === The split ===


def singles(n):
    return [Sample(Path(f"/d/train/raw_{i:02d}.tif")) for i in range(n)]


def assert_partition(folds, samples):
    flat = [s for fold in folds for s in fold]
    assert sorted(flat, key=str) == sorted(samples, key=str)  # every image validated exactly once
    assert len(set(map(str, flat))) == len(flat)  # folds disjoint


def test_single_images_fall_into_balanced_disjoint_folds_fixed_by_the_seed():
    samples = singles(10)
    folds = split_folds(samples, 3, seed=0)
    assert_partition(folds, samples)
    assert sorted(len(f) for f in folds) == [3, 3, 4]
    assert all(f == sorted(f, key=lambda s: s.image.name) for f in folds)  # name order inside a fold
    assert split_folds(samples, 3, seed=0) == folds
    assert any(split_folds(samples, 3, seed=s) != folds for s in (1, 2, 3))


def test_stack_pages_stay_in_one_fold_and_one_sequence_becomes_contiguous_blocks():
    stacks = [Sample(Path(f"/d/s{j}.tif"), page=p) for j in range(3) for p in range(4)]
    samples = stacks + singles(2)
    folds = split_folds(samples, 3, seed=5)
    assert_partition(folds, samples)
    for j in range(3):
        assert sum(any(s.image.name == f"s{j}.tif" for s in fold) for fold in folds) == 1
    frames = [Sample(Path(f"/d/01/t{i:03d}.tif")) for i in range(9)]  # one ordered sequence: fewer groups than folds
    blocks = split_folds(frames, 3, seed=1, ordered=True)
    assert_partition(blocks, frames)
    assert sorted([int(s.image.stem[1:]) for s in b] for b in blocks) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize("k, message", [(3, r"`folds` 3: only 2 labelled training image"), (1, r"`folds` 1: must be")])
def test_too_few_images_or_folds_is_one_line(k, message):
    with pytest.raises(UserInputError, match=message):
        split_folds(singles(2), k)


def test_too_few_images_for_k_writes_nothing(tem_dir_factory, tmp_path):
    with pytest.raises(UserInputError, match=r"`folds` 5: only 4 labelled training image\(s\)"):
        run_folds(tiny_cfg(tem_dir_factory(4)), 5, tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserInputError, match=r"`data.train_size`: cross-validation trains on every"):
        run_folds(replace_config(tiny_cfg(tem_dir_factory(4)), data={"train_size": 2}), 2, tmp_path / "out")


# === Reports and resuming, with a stand-in for train() ===


class FakeTrain:
    """Stand-in for train(): records each fold's settings and data, writes a finished run folder."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, data, log=print, verbose="auto"):
        run_dir = Path(cfg.train.out)
        fold = int(run_dir.name.split("-")[1])
        self.calls.append(
            (fold, cfg.train.resume, [s.image.name for s in data.train], [s.image.name for s in data.val])
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "best.keras").write_text("")
        best = {"loss": 1.0 / fold, "dice": 0.1 * fold, "iou": 0.05 * fold * fold}
        summary = RunSummary(run_dir, fold, 3, best, 10.0 + fold, None, len(data.train), len(data.val), 0, "float32",
                             None, "", "")  # fmt: skip
        (run_dir / "summary.json").write_text(json.dumps(summary.to_dict()))
        return summary


def test_folds_write_run_folders_rows_and_a_summary_of_the_rows(tem_dir_factory, tmp_path, monkeypatch):
    fake, out, logs = FakeTrain(), tmp_path / "cv", []
    monkeypatch.setattr(folds_mod, "train", fake)
    content = run_folds(tiny_cfg(tem_dir_factory(4)), 3, out, log=logs.append)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["fold-1", "fold-2", "fold-3"]
    validated = [name for _, _, _, val in fake.calls for name in val]
    assert sorted(validated) == [f"raw_{i:02d}.tif" for i in range(4)]  # each image validates once
    for _, _, train, val in fake.calls:
        assert not set(train) & set(val) and len(train) + len(val) == 4
    rows = read_csv(out / "folds.csv")
    assert [r["fold"] for r in rows] == ["1", "2", "3"] and [r["run_dir"] for r in rows] == [
        "fold-1",
        "fold-2",
        "fold-3",
    ]
    dice = np.array([float(r["val_dice"]) for r in rows])
    np.testing.assert_allclose(dice, [0.1, 0.2, 0.3])
    saved = json.loads((out / "folds_summary.json").read_text())
    assert saved == json.loads(json.dumps(content)) and saved["folds"] == 3 and saved["finished"] == 3
    for column in ("val_dice", "val_iou", "val_loss", "best_epoch", "seconds"):
        values = np.array([float(r[column]) for r in rows])
        stats = saved["metrics"][column]
        assert stats["mean"] == pytest.approx(values.mean()) and stats["std"] == pytest.approx(values.std(ddof=1))
        assert (stats["min"], stats["max"]) == (pytest.approx(values.min()), pytest.approx(values.max()))
    assert any("val_dice" in line and "0.2000 ± 0.1000" in line for line in logs)


def test_rerun_skips_finished_folds_and_resumes_an_interrupted_one(tem_dir_factory, tmp_path, monkeypatch):
    out, cfg = tmp_path / "cv", tiny_cfg(tem_dir_factory(4))
    monkeypatch.setattr(folds_mod, "train", FakeTrain())
    run_folds(cfg, 2, out, log=lambda _: None)
    (out / "fold-2" / "summary.json").unlink()  # fold 2 stopped after an epoch: only its backup is left
    (out / "fold-2" / "backup").mkdir()
    again, logs = FakeTrain(), []
    monkeypatch.setattr(folds_mod, "train", again)
    run_folds(cfg, 2, out, log=logs.append)
    assert [(fold, resume) for fold, resume, _, _ in again.calls] == [(2, True)]
    assert "fold 1/2: finished before, skip" in logs and len(read_csv(out / "folds.csv")) == 2
    third = FakeTrain()
    monkeypatch.setattr(folds_mod, "train", third)
    run_folds(cfg, 2, out, log=lambda _: None)
    assert third.calls == []
    with pytest.raises(UserInputError, match=r"holds a cross-validation with other settings .*train.epochs"):
        run_folds(tiny_cfg(tem_dir_factory(4), epochs=3), 2, out, log=lambda _: None)


def test_summary_skips_nan_and_gives_nan_std_for_one_fold():
    rows = [{"fold": 1, "val_dice": 0.5, "best_epoch": 2, "seconds": 1.0}, {"fold": 2, "val_dice": math.nan}]
    summary = summarize_folds(rows)
    assert summary["val_dice"]["mean"] == 0.5 and math.isnan(summary["val_dice"]["std"])
    assert summary["val_dice"]["min"] == summary["val_dice"]["max"] == 0.5


# === The tiny real run through train.py ===


@pytest.mark.slow  # two tiny trainings and an ensemble prediction through train.py
def test_folds_through_train_py_with_the_ensemble(tem_dir_factory, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["--dataset", "tem", "--data-dir", str(tem_dir_factory(4)), "--base-filters", "4", "--depth", "2",
            "--patch-size", "64", "--patches-per-image", "2", "--batch-size", "2", "--epochs", "1",
            "--steps-per-epoch", "2", "--precision", "float32", "--out", str(out), "--quiet"]  # fmt: skip
    assert train_main([*args, "--folds", "2", "--ensemble"]) == 0
    printed = capsys.readouterr().out
    assert "mean ± std" in printed and "ensemble of 2 folds: 1 test image(s)" in printed
    for fold in (1, 2):
        config = json.loads((out / f"fold-{fold}" / "config.json").read_text())
        assert (out / f"fold-{fold}" / "best.keras").is_file() and len(config["resolved"]["val_images"]) == 2
    rows = read_csv(out / "folds.csv")
    summary = json.loads((out / "folds_summary.json").read_text())
    assert summary["metrics"]["val_dice"]["mean"] == pytest.approx(np.mean([float(r["val_dice"]) for r in rows]))
    assert summary["ensemble"]["test_images"] == 1 and 0 <= summary["ensemble"]["mean_dice"] <= 1
    assert (out / "ensemble" / "raw_00_mask.tif").is_file() and (out / "ensemble" / "metrics.csv").is_file()
    assert train_main([*args, "--ensemble"]) == 2  # --ensemble without --folds
    assert capsys.readouterr().err.strip().endswith("--ensemble: needs --folds K")
