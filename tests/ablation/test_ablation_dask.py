"""The ablation grid on a 2-worker LocalCluster: the same rows as the serial grid, one run folder per cell."""

import csv
import os
import subprocess
import sys

import pytest

pytest.importorskip("distributed")

from unet_tf.cli.train import main as train_main  # noqa: E402
from unet_tf.cluster import worker_environment  # noqa: E402
from unet_tf.errors import UserInputError  # noqa: E402

SAME = ("mean_dice", "pixel_accuracy", "n_train", "n_val", "n_test", "epochs", "steps", "best_epoch", "run_dir")


def read_rows(path):
    with open(path, newline="") as f:
        return {(r["size"], r["augment"], r["seed"]): r for r in csv.DictReader(f)}


def grid_args(tem_dir, out, *extra):
    return ["--dataset", "tem", "--data-dir", str(tem_dir), "--base-filters", "4", "--depth", "2", "--patch-size",
            "64", "--patches-per-image", "2", "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "2",
            "--out", str(out), "--quiet", "--ablation", "--train-sizes", "3", "--augment", "on,off",
            *extra]  # fmt: skip


@pytest.mark.slow  # a 2-worker cluster, two tiny cells, and the serial grid in a process pinned like a worker
def test_grid_on_two_workers_equals_the_serial_grid(tem_dir_factory, tmp_path, capsys):
    tem_dir = tem_dir_factory(4)
    # the serial path, in a process with a worker's thread pinning (local:2 splits the cores in two):
    # oneDNN's sums, hence the trained weights, depend on the thread count
    threads = max(1, (os.cpu_count() or 1) // 2)
    serial = subprocess.run(
        [sys.executable, "-m", "unet_tf.cli.train", *grid_args(tem_dir, tmp_path / "serial")],
        env={**os.environ, **worker_environment(threads)},
        capture_output=True,
        text=True,
    )
    assert serial.returncode == 0, serial.stderr[-2000:]
    assert train_main(grid_args(tem_dir, tmp_path / "dask", "--scheduler", "local:2")) == 0
    out = capsys.readouterr().out
    assert "dask: 2 worker(s)" in out and "dask: 2 run(s) submitted" in out and "2 of 2 cells done" in out
    expected, got = read_rows(tmp_path / "serial" / "ablation.csv"), read_rows(tmp_path / "dask" / "ablation.csv")
    assert sorted(got) == sorted(expected) == [("3", "off", "0"), ("3", "on", "0")]
    for key, row in got.items():
        dices = [c for c in row if c.startswith("dice_")]
        assert {c: row[c] for c in (*SAME, *dices)} == {c: expected[key][c] for c in (*SAME, *dices)}
        assert 0 <= float(row["mean_dice"]) <= 1  # a number, not nan == nan
        assert (tmp_path / "dask" / row["run_dir"] / "best.keras").is_file()
        assert (tmp_path / "dask" / row["run_dir"] / "test" / "metrics.csv").is_file()
    assert len(list((tmp_path / "dask" / "cells").iterdir())) == 2
    assert (tmp_path / "dask" / "ablation.md").is_file() and (tmp_path / "dask" / "ablation.png").is_file()
    # the same command again: every cell is skipped before anything is submitted
    assert train_main(grid_args(tem_dir, tmp_path / "dask", "--scheduler", "local:2")) == 0
    again = capsys.readouterr().out
    assert again.count("finished before, skip") == 2 and "submitted" not in again


def test_scheduler_needs_many_runs_and_an_unreachable_one_writes_nothing(tem_dir_factory, tmp_path, capsys):
    tem_dir = tem_dir_factory(4)
    single = grid_args(tem_dir, tmp_path / "one")[: grid_args(tem_dir, tmp_path).index("--ablation")]
    assert train_main([*single, "--scheduler", "local:2"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--scheduler: needs --folds or --ablation (one run scales with --strategy)")
    )
    assert not (tmp_path / "one").exists()
    with pytest.raises(UserInputError, match=r"`scheduler` 'nowhere'"):
        from unet_tf.ablation import run_ablation
        from unet_tf.config import AblationConfig, load_config

        cfg = load_config(None, dataset="tem", data_dir=str(tem_dir), patch_size=64, base_filters=4, depth=2)
        run_ablation(cfg, AblationConfig(train_sizes=(3,)), tmp_path / "grid", log=lambda _: None, scheduler="nowhere")
    assert not (tmp_path / "grid").exists()
