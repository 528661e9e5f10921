"""Tests of the synthetic TEM generator (images, labels, instance ids), its dataset writer and
command line, and the Otsu baseline of bench/otsu_baseline.py."""

from __future__ import annotations

import hashlib
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from otsu_baseline import dice_score, otsu_baseline, otsu_threshold  # noqa: E402

from unet_tf.cli.synthetic import main  # noqa: E402
from unet_tf.errors import UserInputError  # noqa: E402
from unet_tf.synthetic import (  # noqa: E402
    TEM_CLASS_NAMES,
    TEM_CLASS_VALUES,
    generate_tem_image,
    generate_tem_sample,
    image_seed,
    write_tem_dataset,
)

MYELINATED = TEM_CLASS_VALUES[TEM_CLASS_NAMES.index("myelinated_axon")]


@pytest.fixture(scope="module")
def pair256():
    return generate_tem_image(256, seed=3)


def test_same_seed_same_arrays_different_seed_differs(pair256):
    image, label = generate_tem_image(256, seed=3)
    np.testing.assert_array_equal(image, pair256[0])
    np.testing.assert_array_equal(label, pair256[1])
    other_image, other_label = generate_tem_image(256, seed=4)
    assert not np.array_equal(other_image, image)
    assert not np.array_equal(other_label, label)


def test_dtypes_shapes_and_range(pair256):
    image, label = pair256
    assert image.dtype == np.uint16 and label.dtype == np.uint8
    assert image.shape == label.shape == (256, 256)
    # A realistic camera range, not the full 16-bit range and not 8-bit.
    assert 500 < image.min() and image.max() < 62000 and image.max() > 20000
    rect_image, rect_label = generate_tem_image((96, 160), seed=1)
    assert rect_image.shape == rect_label.shape == (96, 160)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_five_classes_and_nothing_else(seed):
    _, label = generate_tem_image(256, seed=seed)
    assert set(np.unique(label).tolist()) == set(TEM_CLASS_VALUES)


def test_class_fractions_plausible(pair256):
    _, label = pair256
    frac = {name: float(np.mean(label == v)) for name, v in zip(TEM_CLASS_NAMES, TEM_CLASS_VALUES)}
    assert frac["background"] <= 0.9
    foreground = {k: v for k, v in frac.items() if k != "background"}
    assert max(foreground, key=foreground.get) == "myelinated_axon"
    assert frac["myelinated_axon"] > 0.3


def test_myelin_darker_than_axoplasm_and_background(pair256):
    image, label = pair256
    fiber = label == 100
    # Inside a fiber the darkest quarter (myelin) is far darker than the
    # brightest quarter (axoplasm); background sits in between on average.
    lo, hi = np.percentile(image[fiber], [25, 75])
    assert hi - lo > 8000
    assert lo < np.mean(image[label == 0]) < hi


def sha256(*arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


@pytest.mark.parametrize(
    "size, seed, expected",
    [
        # sha256 of image + label bytes, computed with the generator before instance ids were added
        # (commit 15dc89f); train/raw_00 of the default dataset is in the README's figures.
        (1024, image_seed(0, 0, 0), "19db373dfa737eb74fdecc0613e8eefd12cb5b8ca0ce529aede549277ff73e40"),
        (256, 0, "81e07e24e533a79425ef9071353d7c49621206c17cbc8b55d991055a6e403824"),
    ],
)
def test_images_and_labels_unchanged_for_a_seed(size, seed, expected):
    assert sha256(*generate_tem_image(size, seed)) == expected


@pytest.mark.parametrize("size, seed", [(256, 0), (256, 3), ((96, 160), 1), (16, 2)])
def test_instances_agree_with_the_class_label(size, seed):
    sample = generate_tem_sample(size, seed)
    image, label = generate_tem_image(size, seed)
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.label, label)
    ids, classes = sample.instances, sample.instance_classes
    assert ids.dtype == np.uint16 and ids.shape == label.shape and classes[0] == 0
    # every pixel of an instance has that instance's class; background (only) has no instance
    np.testing.assert_array_equal(classes[ids], label)
    np.testing.assert_array_equal(ids == 0, label == 0)
    assert set(classes[1:].tolist()) <= set(TEM_CLASS_VALUES[1:])
    # one myelinated instance per fibre placed, each one piece and none lost under later objects
    fibres = np.unique(ids[label == MYELINATED])
    assert len(fibres) == sample.n_fibres == len(sample.fibre_ids)
    assert all(ndi.label(ids == i)[1] == 1 for i in fibres)
    assert set(np.unique(ids).tolist()) == set(range(len(classes)))


def test_instances_separate_touching_fibres():
    sample = generate_tem_sample(256, seed=3)
    _, merged = ndi.label(sample.label == MYELINATED)
    # the class mask merges touching fibres; the instance ids keep them apart
    assert sample.n_fibres >= 15 and merged < sample.n_fibres
    assert generate_tem_sample(256, seed=3).n_fibres == sample.n_fibres


def test_bad_size_is_a_user_error():
    with pytest.raises(UserInputError, match="size"):
        generate_tem_image(8)


def test_write_dataset_files_roundtrip_and_stable_prefix(tmp_path):
    import tifffile

    info = write_tem_dataset(tmp_path / "a", n_train=2, n_test=1, size=64, seed=5)
    assert info["n_train"] == 2 and info["n_test"] == 1 and info["size"] == [64, 64] and info["files"] == 9
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*"))
    assert names == [
        "test",
        "test/inst_00.tif",
        "test/label_00.tif",
        "test/raw_00.tif",
        "train",
        "train/inst_00.tif",
        "train/inst_01.tif",
        "train/label_00.tif",
        "train/label_01.tif",
        "train/raw_00.tif",
        "train/raw_01.tif",
    ]
    raw = tifffile.imread(tmp_path / "a" / "train" / "raw_01.tif")
    lab = tifffile.imread(tmp_path / "a" / "train" / "label_01.tif")
    inst = tifffile.imread(tmp_path / "a" / "train" / "inst_01.tif")
    assert raw.dtype == np.uint16 and lab.dtype == np.uint8 and raw.shape == (64, 64)
    sample = generate_tem_sample(64, image_seed(5, 0, 1))
    for written, made in ((raw, sample.image), (lab, sample.label), (inst, sample.instances)):
        assert written.dtype == made.dtype
        np.testing.assert_array_equal(written, made)

    plain = write_tem_dataset(tmp_path / "p", n_train=1, n_test=0, size=32, seed=5, instances=False)
    assert plain["files"] == 2 and not list((tmp_path / "p").rglob("inst_*"))

    # Adding an image keeps the earlier ones; train and test images differ.
    write_tem_dataset(tmp_path / "b", n_train=3, n_test=1, size=64, seed=5)
    for name in ("raw_00.tif", "raw_01.tif", "label_01.tif"):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "a" / "train" / name), tifffile.imread(tmp_path / "b" / "train" / name)
        )
    assert (tmp_path / "b" / "train" / "raw_02.tif").exists()
    assert not np.array_equal(
        tifffile.imread(tmp_path / "a" / "test" / "raw_00.tif"),
        tifffile.imread(tmp_path / "a" / "train" / "raw_00.tif"),
    )


def test_cli_writes_dataset(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--n-train", "1", "--n-test", "0", "--size", "48"]) == 0
    assert (tmp_path / "train" / "raw_00.tif").exists() and (tmp_path / "train" / "inst_00.tif").exists()
    assert str(tmp_path) in capsys.readouterr().out
    assert (
        main(["--out", str(tmp_path / "b"), "--n-train", "1", "--n-test", "0", "--size", "48", "--no-instances"]) == 0
    )
    assert (tmp_path / "b" / "train" / "label_00.tif").exists() and not (
        tmp_path / "b" / "train" / "inst_00.tif"
    ).exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "c"), "--size", "8"])
    assert exit_info.value.code == 2 and "size" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path, monkeypatch, capsys):
    # what `python -m unet_tf.synthetic --out DIR ...` runs, in this process (no second TensorFlow import)
    argv = ["python -m unet_tf.synthetic", "--out", str(tmp_path), "--n-train", "1", "--n-test", "0", "--size", "32"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("unet_tf.synthetic", run_name="__main__")
    assert exit_info.value.code == 0
    assert (tmp_path / "train" / "raw_00.tif").exists() and "wrote 1 train" in capsys.readouterr().out


def test_otsu_hand_checked_three_levels():
    # Half 0, a quarter 1, a quarter 3. Split {0}|{1,3}: 0.5*0.5*(0-2)^2 = 1.0;
    # split {0,1}|{3}: 0.75*0.25*(1/3-3)^2 = 1.333 -> the threshold lies in (1, 3].
    x = np.array([0] * 8 + [1] * 4 + [3] * 4, dtype=np.uint16)
    t = otsu_threshold(x)
    assert 1 < t <= 3
    np.testing.assert_array_equal(x < t, x <= 1)


def test_otsu_bimodal_gaussians_threshold_between_modes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1000, 100, 5000), rng.normal(3000, 100, 5000)])
    assert 1800 < otsu_threshold(x) < 2200
    assert otsu_threshold(np.full(10, 7.0)) == 7.0  # constant: no split


def test_dice_score_hand_values():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert dice_score(a, b) == pytest.approx(0.5)
    assert dice_score(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_otsu_baseline_best_side_per_class():
    # Dark left half = class 100, bright right half split into classes 0 and 50.
    image = np.zeros((4, 4), np.uint16)
    image[:, 2:] = 1000
    label = np.zeros((4, 4), np.uint8)
    label[:, :2] = 100
    label[:2, 2:] = 50
    scores = otsu_baseline([image], [label], class_values=(0, 50, 100, 150))
    assert list(scores) == ["class_0", "class_50", "class_100", "class_150"]
    assert scores["class_100"] == pytest.approx(1.0)
    assert scores["class_0"] == pytest.approx(2 * 4 / (8 + 4))  # bright side
    assert scores["class_50"] == pytest.approx(2 * 4 / (8 + 4))
    assert np.isnan(scores["class_150"])  # absent everywhere


def test_otsu_baseline_is_poor_on_synthetic_tem(pair256):
    scores = otsu_baseline([pair256[0]], [pair256[1]])
    assert list(scores) == list(TEM_CLASS_NAMES)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    # A single threshold cannot separate the small classes.
    for name in ("blood_vessel", "unmyelinated_axon", "schwann_cell"):
        assert scores[name] < 0.3


def test_split_touching_counts_the_generated_fibres_within_five_percent():
    """The packed myelinated fibres of a demo image, merged in the class mask, counted one by one again."""
    from unet_tf.evaluation.matching import evaluate_instances
    from unet_tf.objects.instances import split_touching

    sample = generate_tem_sample(512, seed=1)
    merged = ndi.label(sample.label == MYELINATED)[1]
    true = np.where(sample.label == MYELINATED, sample.instances, 0)
    pred = split_touching(sample.label == MYELINATED)
    n_pred = len(np.unique(pred)) - 1
    assert merged < 0.9 * sample.n_fibres  # touching fibres are one blob without splitting
    assert abs(n_pred - sample.n_fibres) <= 0.05 * sample.n_fibres
    assert evaluate_instances(true, pred)["ap50"] >= 0.9
