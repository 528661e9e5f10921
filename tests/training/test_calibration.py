"""The foreground threshold of an instance model: chosen on validation images, carried in the model file,
used by prediction unless set."""

import csv

import numpy as np
import pytest
from _helpers import disc

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo
from unet_tf.prediction.image import predict_image
from unet_tf.training.calibration import FOREGROUND_GRID, MIN_OBJECTS, choose_foreground_threshold

STEP, R, HALO = 30, 6, 12  # a 5 x 5 grid of discs of radius R, each in a ring of weaker probability to HALO


def grid_of_discs(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(instance labels of n x n discs, (H, W, 3) probabilities: 0.99 object inside each disc, 0.62 in a
    ring around it out to radius HALO, as a recall-leaning network predicts)."""
    shape = (n * STEP, n * STEP)
    truth = np.zeros(shape, np.int32)
    prob = np.zeros((*shape, 3), np.float32)
    prob[..., 0] = 1.0
    for k in range(n * n):
        cy, cx = (k // n + 0.5) * STEP, (k % n + 0.5) * STEP
        ring = disc(shape, cy, cx, HALO)
        prob[ring] = (0.38, 0.0, 0.62)
        inside = disc(shape, cy, cx, R)
        prob[inside] = (0.01, 0.84, 0.15)
        truth[inside] = k + 1
    return truth, prob


def test_the_threshold_that_drops_the_halo_is_chosen():
    """At 0.3-0.6 each object is the ring (IoU (6/12)^2 = 0.25: no match); from 0.65 the disc itself (AP 1):
    the tie goes to the threshold nearest 0.5."""
    truth, prob = grid_of_discs()
    calibration = choose_foreground_threshold([prob], [truth])
    assert calibration.objects == 25 and set(calibration.scores) == set(FOREGROUND_GRID)
    assert calibration.threshold == 0.65
    assert all(calibration.scores[t] == (0.0, 0.0) for t in FOREGROUND_GRID if t <= 0.6)
    assert all(calibration.scores[t] == (1.0, 1.0) for t in FOREGROUND_GRID if t >= 0.65)
    assert "foreground threshold 0.65, calibrated on 25 validation objects" in calibration.summary()


def test_too_few_validation_objects_leave_the_model_uncalibrated():
    truth, prob = grid_of_discs(4)  # 16 objects
    calibration = choose_foreground_threshold([prob], [truth])
    assert calibration.threshold is None and calibration.objects == 16 < MIN_OBJECTS
    assert calibration.scores == {} and "16 validation objects" in calibration.summary()


class HaloModel:
    """A fake instance network with ``.info``: grid_of_discs' probabilities for bright pixels' discs."""

    def __init__(self, foreground_threshold=None):
        values, names = (0, 1, 2), ("background", "interior", "boundary")
        self.info = ModelInfo(
            values, names, size_divisor=2, target="instances", foreground_threshold=foreground_threshold
        )

    def __call__(self, batch):
        return np.stack([grid_of_discs()[1]] * len(batch))


@pytest.mark.parametrize("own, given, expected_area", [(None, None, 441), (0.7, None, 113), (0.7, 0.5, 441)])
def test_prediction_uses_the_models_threshold_unless_one_is_given(own, given, expected_area):
    """Disc areas: radius 6 -> 113 px (the truth), radius 12 -> 441 px (the halo taken as object)."""
    image = (grid_of_discs()[0] > 0).astype(np.uint16) * 1000
    options = dict(tile=150, overlap=0, diameter=None, min_size=0, foreground_threshold=given)
    result = predict_image(HaloModel(own), image, PredictConfig(**options))
    areas = np.bincount(result.instances.ravel())[1:]
    assert len(areas) == 25 and np.all(areas == expected_area)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.5"])
def test_a_foreground_threshold_outside_0_1_is_refused(bad):
    with pytest.raises(UserInputError, match="`predict.foreground_threshold`"):
        PredictConfig(foreground_threshold=bad)


def test_training_an_instance_model_calibrates_it_and_keeps_its_weights(tmp_path):
    """The validation image holds 25 nuclei: best.keras carries the chosen threshold (the best row of
    calibration.csv), and its weights are those of last.keras (one epoch: the same)."""
    import tifffile

    from unet_tf.cli.train import main as train_main
    from unet_tf.models.file import load_model_and_info

    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    truth = grid_of_discs()[0].astype(np.uint16)
    for i in range(2):
        image = (truth > 0) * 200 + rng.integers(0, 60, truth.shape)
        tifffile.imwrite(tmp_path / "data" / "images" / f"a{i}.tif", image.astype(np.uint16))
        tifffile.imwrite(tmp_path / "data" / "masks" / f"a{i}.tif", truth)
    args = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--instance-masks", "--patch-size", "32"]
    args += ["--patches-per-image", "1", "--base-filters", "4", "--depth", "2", "--epochs", "1", "--val-fraction"]
    args += ["0.5", "--steps-per-epoch", "1", "--batch-size", "2", "--out", str(tmp_path / "run"), "--quiet"]
    assert train_main(args) == 0
    best, info = load_model_and_info(tmp_path / "run" / "best.keras")
    last, _ = load_model_and_info(tmp_path / "run" / "last.keras")
    with open(tmp_path / "run" / "calibration.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["foreground_threshold"]) for r in rows] == list(FOREGROUND_GRID)
    chosen = [r for r in rows if r["chosen"] == "1"]
    assert len(chosen) == 1 and float(chosen[0]["foreground_threshold"]) == info.foreground_threshold
    assert float(chosen[0]["ap50"]) == max(float(r["ap50"]) for r in rows)
    x = np.random.default_rng(1).random((1, 32, 32, 1), np.float32)
    np.testing.assert_array_equal(np.asarray(best(x)), np.asarray(last(x)))


def test_a_fine_tuned_run_too_small_to_calibrate_keeps_its_parents_threshold(tmp_path):
    """Two validation nuclei: no calibration of its own; the --init-from parent's 0.8 is written instead."""
    import keras
    import tifffile

    from unet_tf.cli.train import main as train_main
    from unet_tf.config import ModelConfig
    from unet_tf.models.build import build_model
    from unet_tf.models.file import attach_info, load_model_and_info

    tiny = ModelConfig(base_filters=4, depth=2)
    keras.utils.set_random_seed(0)
    names = ("background", "interior", "boundary")
    info = ModelInfo((0, 1, 2), names, patch_size=32, target="instances", object_diameter=12.0, model=tiny)
    attach_info(build_model(tiny, 3), ModelInfo.from_dict({**info.to_dict(), "foreground_threshold": 0.8})).save(
        tmp_path / "parent.keras"
    )
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    truth = np.zeros((64, 64), np.uint16)
    truth[disc((64, 64), 16, 16, R)], truth[disc((64, 64), 44, 44, R)] = 1, 2
    for i in range(2):
        image = (truth > 0) * 200 + rng.integers(0, 60, truth.shape)
        tifffile.imwrite(tmp_path / "data" / "images" / f"a{i}.tif", image.astype(np.uint16))
        tifffile.imwrite(tmp_path / "data" / "masks" / f"a{i}.tif", truth)
    args = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--instance-masks", "--patch-size", "32"]
    args += ["--patches-per-image", "1", "--epochs", "1", "--val-fraction", "0.5", "--steps-per-epoch", "1"]
    args += ["--batch-size", "2", "--init-from", str(tmp_path / "parent.keras"), "--out", str(tmp_path / "run")]
    assert train_main([*args, "--quiet"]) == 0
    assert load_model_and_info(tmp_path / "run" / "best.keras")[1].foreground_threshold == 0.8
    assert not (tmp_path / "run" / "calibration.csv").exists()
