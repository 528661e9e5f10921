"""Tiny end-to-end training runs: run folder, model file contract, resume, bad input."""

import csv
import json

import numpy as np
import pytest
from _helpers import tiny_train_config

from unet_tf.cli.train import main as train_main
from unet_tf.config import RunConfig, replace_config
from unet_tf.io.metadata import resolution_kwargs
from unet_tf.models.file import read_info
from unet_tf.objects.scale import instance_areas, median_diameter
from unet_tf.training.run import train

RUN_FILES = {"best.keras", "last.keras", "config.json", "history.csv", "curves.png", "summary.json"}


@pytest.fixture
def tem_dir(tem_dir_factory):
    """The session's synthetic TEM folder with 3 training images (conftest.py); read only."""
    return tem_dir_factory(3)


def test_two_epochs_write_every_run_file_and_model_round_trips(tiny_trained_run):
    """The session's tiny run (conftest.py: tiny_train_config, 2 epochs x 2 steps) wrote every file."""
    import keras

    import unet_tf  # noqa: F401  (the only import a loader needs)

    run, summary = tiny_trained_run
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert summary.epochs_run == 2 and 1 <= summary.best_epoch <= 2 and summary.stopped == "epochs"
    assert summary.to_dict() == json.loads((run / "summary.json").read_text())  # summary.json, as before
    assert summary.best_path == run / "best.keras" and summary.last_path == run / "last.keras"
    assert summary.best_metric == "dice" and summary.best_value == summary.best["dice"]
    assert set(summary.class_dice) == {"blood_vessel", "myelinated_axon", "unmyelinated_axon", "schwann_cell"}
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"val_dice", "val_loss", "dice_myelinated_axon"} <= set(rows[0])
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["patch_size"] == 64 and config["model"]["base_filters"] == 4
    # the plan: the set patch size and depth kept, the rest from the data; the fingerprint beside it
    plan = config["resolved"]["plan"]
    assert (plan["patch_size"], plan["depth"], plan["boundary_width"], plan["border_sigma"]) == (64, 2, 2, 5.0)
    assert plan["sources"] == {"patch_size": "set", "depth": "set", "boundary_width": "data", "border_sigma": "data"}
    assert config["resolved"]["fingerprint"]["n_images"] == 3 and config["data"]["border_sigma"] == 5.0

    model = keras.models.load_model(run / "last.keras", compile=False)
    info = read_info(model)
    assert info.class_values == (0, 50, 100, 150, 200)
    assert info.class_names[2] == "myelinated_axon"
    assert info.patch_size == 64 and info.normalize.pmin == 2.0 and info.target == "semantic"
    x = np.random.default_rng(0).random((1, 64, 96, 1)).astype("float32")
    y = model(x, training=False)
    assert tuple(y.shape) == (1, 64, 96, 5)
    again = keras.models.load_model(run / "last.keras", compile=False)
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), np.asarray(y))


def test_resume_continues_at_the_interrupted_epoch(tem_dir, tmp_path):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tem_dir, out, steps_per_epoch=1), verbose=0, extra_callbacks=[Interrupt()])
    with open(out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]
    summary = train(tiny_train_config(tem_dir, out, steps_per_epoch=1, resume=True), verbose=0)
    with open(out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert summary.epochs_run == 2


def test_resumed_run_keeps_a_better_best_model_of_the_interrupted_one(tmp_path):
    """After --resume the best checkpoint starts from history.csv's best val_dice (0.9), so a worse first
    resumed epoch (0.5) does not overwrite best.keras; a better one (0.95) does."""
    import keras

    from unet_tf.training.callbacks import AtomicModelCheckpoint, best_so_far, make_callbacks

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,val_dice,val_loss\n0,0.6,0.5\n1,0.9,0.3\n2,nan,0.4\n")
    assert best_so_far(run / "history.csv", "val_dice", "max") == 0.9
    assert best_so_far(run / "history.csv", "val_loss", "min") == 0.3
    assert best_so_far(run / "history.csv", "dice", "max") is None
    cfg = tiny_train_config(tmp_path, run, resume=True)
    best = next(c for c in make_callbacks(cfg, run, 1) if isinstance(c, AtomicModelCheckpoint) and c.save_best_only)
    best.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    best.on_epoch_end(3, {"val_dice": 0.5, "val_loss": 0.2})
    assert not (run / "best.keras").exists()
    best.on_epoch_end(4, {"val_dice": 0.95, "val_loss": 0.2})
    assert (run / "best.keras").is_file()


def _cli(tem_dir, tmp_path, *extra):
    return train_main(
        [
            "--dataset",
            "tem",
            "--data-dir",
            str(tem_dir),
            "--out",
            str(tmp_path / "cli"),
            "--base-filters",
            "4",
            "--depth",
            "2",
            "--patch-size",
            "64",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--batch-size",
            "2",
            "--quiet",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--patch-size", "62"], "--patch-size 62 is not divisible"),
        (["--train-size", "9"], "--train-size 9: the dataset has 3"),
        (["--class-values", "0,50,100"], "label_00.tif: label values 150"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
    ],
)
def test_bad_input_is_one_line_before_training(tem_dir, tmp_path, capsys, extra, message):
    assert _cli(tem_dir, tmp_path, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "cli" / "best.keras").exists()


def test_unwritable_out_and_bad_config_key(tem_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert train_main(["--data-dir", str(tem_dir), "--out", str(blocker / "run")]) == 2
    assert "cannot write the run folder" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 2\nbase_filter: 8\n")
    assert train_main(["--config", str(cfg)]) == 2
    assert "unknown setting 'base_filter'" in capsys.readouterr().err


def test_config_file_is_overridden_by_flags(tmp_path):
    from unet_tf.cli.train import build_parser, config_from_args

    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"epochs": 7, "model": {"base_filters": 8}, "augment": False, "pmax": 99.8}))
    cfg = config_from_args(build_parser().parse_args(["--config", str(cfg_file), "--epochs", "3"]))
    assert cfg.train.epochs == 3 and cfg.model.base_filters == 8
    assert cfg.data.augment.enabled is False and cfg.data.normalize.pmax == 99.8
    assert cfg.data.balance_background is False
    assert config_from_args(build_parser().parse_args(["--balance-background"])).data.balance_background


def test_background_balance_is_logged_and_off_by_default():
    from unet_tf.config import load_config
    from unet_tf.training.run import image_shares

    dark = [np.zeros((20, 20), np.float32) for _ in range(3)]
    for im in dark:
        im[5:9, 5:9] = 1.0  # bright nuclei on a dark background
    bright = [1.0 - dark[0]]
    lines = []
    assert image_shares(load_config(None), dark + bright, lines.append) is None and lines == []
    shares = image_shares(load_config(None, balance_background=True), dark + bright, lines.append)
    np.testing.assert_allclose(shares, [3**-0.5] * 3 + [1.0])
    assert lines == ["patch shares: 1 bright-background images get 37% of the patches, 3 dark-background 63%"]


def test_best_model_written_when_validation_has_no_foreground(tmp_path):
    """Validation Dice is undefined without foreground: best.keras follows the validation loss instead."""
    from unet_tf.data.layouts import ArraySample, DatasetSpec
    from unet_tf.data.splits import TrainingData

    rng = np.random.default_rng(0)
    image = rng.random((64, 64)).astype(np.float32)
    label = np.zeros((64, 64), np.uint8)
    label[16:40, 20:44] = 255
    spec = DatasetSpec("arrays", (0, 255), ("background", "cell"))
    data = TrainingData(spec, (ArraySample("a", image, label),), (ArraySample("b", image, np.zeros_like(label)),))
    cfg = replace_config(
        RunConfig(),
        data={"patch_size": 32, "patches_per_image": 2},
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 2, "steps_per_epoch": 1, "batch_size": 2, "out": str(tmp_path / "run")},
    )
    lines = []
    summary = train(cfg, data=data, log=lines.append, verbose=0)
    assert (tmp_path / "run" / "best.keras").is_file()
    assert any("validation loss instead" in line for line in lines)
    assert summary.best_epoch >= 1


def test_isbi_challenge_volumes_train_page_by_page(tmp_path):
    """The ISBI challenge's own train-volume.tif + train-labels.tif: each page is a sample; a stack stays whole."""
    import tifffile

    from unet_tf.data.layouts import list_samples
    from unet_tf.data.splits import split_train_val
    from unet_tf.errors import UserInputError

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    labels = np.where(rng.random((4, 64, 64)) < 0.3, 0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "train-volume.tif", volume, photometric="minisblack")
    tifffile.imwrite(tmp_path / "train-labels.tif", labels, photometric="minisblack")
    samples = list_samples("isbi2012", tmp_path)
    assert [s.page for s in samples] == [0, 1, 2, 3]
    train_part, val_part = split_train_val(samples, 0.25, seed=0)
    assert len(val_part) == 1 and len(train_part) == 3  # the only stack: a contiguous block of pages
    cfg = replace_config(
        RunConfig(),
        data={"dataset": "isbi2012", "data_dir": str(tmp_path), "patch_size": 32, "patches_per_image": 2},
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "out": str(tmp_path / "run")},
    )
    summary = train(cfg, verbose=0)
    assert (tmp_path / "run" / "best.keras").is_file() and summary.n_train_images == 3
    tifffile.imwrite(tmp_path / "train-labels.tif", labels[:3], photometric="minisblack")
    with pytest.raises(UserInputError, match="train-labels.tif: 3 page\\(s\\), but the image stack"):
        list_samples("isbi2012", tmp_path)


def test_instance_model_carries_a_minimum_object_size_from_its_training_objects(tmp_path):
    """--instance-masks: the model file holds a quarter of the 5th-percentile training object area."""
    import tifffile

    from unet_tf.data.targets import min_object_size, object_areas
    from unet_tf.models.file import load_model_and_info

    rng = np.random.default_rng(0)
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    yy, xx = np.mgrid[:64, :64]
    labels = []
    for i in range(3):
        label = np.zeros((64, 64), np.uint16)
        for k, (cy, cx, r) in enumerate([(16, 16, 6 + i), (44, 40, 9), (20, 48, 4)], 1):
            label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        image = (label > 0) * 200 + rng.integers(0, 40, (64, 64))
        size = resolution_kwargs(0.25)  # every image states 0.25 µm pixels: the model keeps it
        tifffile.imwrite(tmp_path / "data" / "images" / f"a{i}.tif", image.astype(np.uint16), **size)
        tifffile.imwrite(tmp_path / "data" / "masks" / f"a{i}.tif", label)
        labels.append(label)
    args = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--instance-masks", "--patch-size", "32"]
    args += ["--patches-per-image", "1", "--base-filters", "4", "--depth", "2", "--epochs", "1"]
    args += ["--steps-per-epoch", "1", "--batch-size", "2", "--out", str(tmp_path / "run"), "--quiet"]
    assert train_main(args) == 0
    _, info = load_model_and_info(tmp_path / "run" / "best.keras")
    assert info.target == "instances"
    assert info.min_size == min_object_size(object_areas(labels)) > 0
    areas = np.concatenate([instance_areas(x) for x in labels])
    assert info.object_diameter == pytest.approx(median_diameter(areas), abs=1e-3) and info.pixel_size_um == 0.25


def test_model_info_for_measures_the_components_of_each_foreground_class():
    """A semantic target: the diameter is the median over the components of every foreground class, logged."""
    from unet_tf.data.splits import TrainingData
    from unet_tf.training.run import model_info_for

    yy, xx = np.mgrid[:48, :48]
    masks = []
    for r in (3, 6, 9):  # one disc of class 50 (radius r) touching a 6 x 6 square of class 100, per image
        mask = np.zeros((48, 48), np.uint8)
        mask[(yy - 20) ** 2 + (xx - 20) ** 2 <= r * r] = 50
        mask[20:26, 21 + r : 27 + r] = 100
        masks.append(mask)
    images = [m.astype(np.uint16) * 3 for m in masks]
    data = TrainingData.from_arrays(images * 2, masks * 2, (0, 50, 100), val_fraction=0.5, seed=0)
    lines = []
    info = model_info_for(RunConfig(), data, lines.append)
    # objects: discs of 29, 113, 253 px (twice each) and six 36-px squares that touch them; the median of the
    # twelve is a square's: 2 sqrt(36 / pi) = 6.770 px (had the classes been merged, no object would be so small)
    assert info.object_diameter == pytest.approx(6.770, abs=1e-3)
    assert info.min_size is None and info.pixel_size_um is None  # arrays: no file to state a pixel size
    assert any(
        line.startswith("object scale: median diameter") and "components of class_50, class_100" in line
        for line in lines
    ), lines


def test_fit_counts_one_pass_per_epoch_through_one_iterator():
    """steps_per_epoch None: each epoch is one pass (its last batch partial), and model.fit
    is given the repeated dataset, so one iterator serves the whole run."""
    import keras
    import tensorflow as tf

    from unet_tf.training.fit import fit

    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(int(self.model.optimizer.iterations.numpy()))

    x = np.arange(10, dtype=np.float32).reshape(10, 1)

    def batches(shard):
        return tf.data.Dataset.from_tensor_slices((x, 2 * x)).batch(4)  # 4, 4, 2: three steps a pass

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    keras_fit, given = model.fit, []
    model.fit = lambda ds, **kw: given.append(int(ds.cardinality())) or keras_fit(ds, **kw)
    history = fit(
        tf.distribute.get_strategy(),
        model,
        batches,
        batches,
        epochs=3,
        steps_per_epoch=None,
        pass_steps=3,
        callbacks=[Record()],
        verbose=0,
    )
    assert seen == [3, 6, 9]
    assert len(history.history["val_loss"]) == 3
    assert given == [int(tf.data.INFINITE_CARDINALITY)]  # one iterator for the whole run, not one per epoch


def test_bench_epochs_rows_add_up(tem_dir, tmp_path, capsys):
    """bench/bench_epochs.py: one row per epoch whose parts fit inside the epoch's total."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import bench_epochs

    flags = "--data-dir {} --patch-size 64 --patches-per-image 2 --val-fraction 0.34 --base-filters 4 --depth 2"
    flags += " --epochs 2 --batch-size 2 --out {}"
    bench_epochs.main(["--", *flags.format(tem_dir, tmp_path / "run").split()])
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r[0].strip() for r in rows[1:]] == ["1", "2"]  # the header, then epochs 1 and 2
    for cells in rows[1:]:
        total, wait, cpu, steps, median, val, after = (float(c) for c in cells[1:])
        assert min(wait, cpu, steps, median, val, after) >= 0
        assert wait + steps + val + after <= total + 1e-2 and median <= steps
