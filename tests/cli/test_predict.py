"""predict.py end to end on tiny models: outputs, values, evaluation, bad input."""

import csv

import numpy as np
import pytest
import tifffile
from _helpers import TEM_NAMES, TEM_VALUES, save_model

from unet_tf.cli.predict import main as predict_main
from unet_tf.config import ModelConfig
from unet_tf.io.images import read_image


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    labels = tmp_path / "labels"
    folder.mkdir()
    labels.mkdir()
    for name, shape in (("a", (70, 90)), ("b", (64, 64))):
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 60000, shape).astype(np.uint16))
        tifffile.imwrite(labels / f"{name}_mask.tif", rng.choice(TEM_VALUES, shape).astype(np.uint8))
    return folder, labels


@pytest.fixture
def tem_model(tem_model_file):
    """The session's untrained 5-class TEM model (conftest.py); read only."""
    return tem_model_file


def test_outputs_values_metrics_and_objects(tmp_path, images, tem_model):
    folder, labels = images
    out = tmp_path / "out"
    code = predict_main(
        [
            "--weights",
            str(tem_model),
            "--input",
            str(folder),
            "--labels",
            str(labels),
            "--out",
            str(out),
            "--tile",
            "32",
            "--overlap",
            "8",
            "--save-probabilities",
            "--pixel-size",
            "0.5",
        ]
    )
    assert code == 0
    for stem, shape in (("a", (70, 90)), ("b", (64, 64))):
        mask = read_image(out / f"{stem}_mask.tif")
        assert mask.shape == shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= set(TEM_VALUES)
        prob = tifffile.imread(out / f"{stem}_prob.tif")
        assert prob.shape == (5, *shape) and prob.dtype == np.float32
        np.testing.assert_allclose(prob.sum(axis=0), 1, atol=1e-4)
        # The mask is the argmax of the written probabilities, in label values.
        np.testing.assert_array_equal(mask, np.array(TEM_VALUES)[prob.argmax(axis=0)])
        assert read_image(out / f"{stem}_overlay.png").shape == shape
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["image"], r["class"]) for r in rows} >= {
        ("a", "schwann_cell"),
        ("mean", "background"),
        ("all", "background"),
    }
    with open(out / "objects.csv") as f:
        objects = list(csv.DictReader(f))
    assert objects and {o["class"] for o in objects} <= set(TEM_NAMES[1:])
    assert float(objects[0]["area_um2"]) == pytest.approx(0.25 * int(objects[0]["area_px"]))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_binary_threshold_and_default_inputs_from_holdout(tmp_path, images):
    folder, _ = images
    label = tmp_path / "a_label.png"
    import cv2

    cv2.imwrite(str(label), np.where(np.arange(70 * 90).reshape(70, 90) % 3, 255, 0).astype(np.uint8))
    weights = save_model(tmp_path / "bin.keras", [255, 0], ["cell", "membrane"], [(folder / "a.tif", label)])
    code = predict_main(
        [
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "lo"),
            "--tile",
            "32",
            "--overlap",
            "8",
            "--threshold",
            "0.01",
            "--save-probabilities",
            "--no-overlay",
        ]
    )
    assert code == 0
    assert (tmp_path / "lo" / "metrics.csv").exists()  # evaluated on the held-out image by default
    prob = tifffile.imread(tmp_path / "lo" / "a_prob.tif")[1]
    low = read_image(tmp_path / "lo" / "a_mask.tif")
    np.testing.assert_array_equal(low, np.where(prob > 0.01, 0, 255))
    assert not (tmp_path / "lo" / "a_overlay.png").exists()


def test_unreadable_image_is_skipped_and_reported(tmp_path, images, tem_model, capsys):
    folder, _ = images
    (folder / "broken.tif").write_bytes(b"not a tiff at all")
    code = predict_main(
        [
            "--weights",
            str(tem_model),
            "--input",
            str(folder),
            "--out",
            str(tmp_path / "o"),
            "--tile",
            "32",
            "--overlap",
            "8",
        ]
    )
    assert code == 1
    assert "broken.tif" in capsys.readouterr().err
    assert (tmp_path / "o" / "a_mask.tif").exists() and (tmp_path / "o" / "b_mask.tif").exists()
    assert not (tmp_path / "o" / "broken_mask.tif").exists()


def test_bad_input_is_one_line(tmp_path, images, tem_model, capsys):
    import keras

    folder, labels = images

    def run(*args):
        code = predict_main(["--out", str(tmp_path / "x"), *args])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and err.startswith("error: ")
        return err

    assert "no such weights file" in run("--weights", str(tmp_path / "missing.keras"))
    (tmp_path / "junk.keras").write_text("hello")
    assert "not a .keras model file" in run("--weights", str(tmp_path / "junk.keras"))
    plain = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 1)])
    plain.save(tmp_path / "plain.keras")
    assert "not one written by unet_tf" in run("--weights", str(tmp_path / "plain.keras"))
    (tmp_path / "empty").mkdir()
    assert "holds no image files" in run("--weights", str(tem_model), "--input", str(tmp_path / "empty"))
    tifffile.imwrite(labels / "a_mask.tif", np.full((70, 90), 7, np.uint8))
    err = run("--weights", str(tem_model), "--input", str(folder), "--labels", str(labels))
    assert "a_mask.tif: label values 7 are not among" in err
    assert not (tmp_path / "x").exists()  # checked before anything was written
    assert "multiple of the model's size divisor 4" in run(
        "--weights", str(tem_model), "--input", str(folder), "--tile", "30"
    )


def test_weights_or_list_models_is_required_and_list_says_when_none_are_installed(tmp_path, capsys, monkeypatch):
    from unet_tf.models import bundled

    with pytest.raises(SystemExit) as exc:
        predict_main(["--input", str(tmp_path)])
    assert exc.value.code == 2
    assert "the following arguments are required: --weights (or --list-models)" in capsys.readouterr().err
    monkeypatch.setattr(bundled, "DEFAULT_ROOT", tmp_path / "empty")
    assert predict_main(["--list-models"]) == 0
    assert capsys.readouterr().out.startswith("no bundled models are installed (a model is <name>.keras")
    assert predict_main(["--weights", "nuclei", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == (
        "error: --weights nuclei: no such weights file, and no bundled model of that name "
        "(no bundled models are installed)\n"
    )


def test_dsb2018_holdout_is_scored_against_every_nucleus(tmp_path):
    """A dsb2018 case has one mask file per nucleus: the truth is their union, not the first file."""
    import cv2

    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    case = tmp_path / "c1"
    (case / "images").mkdir(parents=True)
    (case / "masks").mkdir()
    cv2.imwrite(str(case / "images" / "c1.png"), np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8))
    masks = []
    for k, (y, x) in enumerate([(5, 5), (30, 30), (45, 10)]):
        m = np.zeros((64, 64), np.uint8)
        m[y : y + 10, x : x + 12] = 255
        cv2.imwrite(str(case / "masks" / f"n{k}.png"), m)
        masks.append(case / "masks" / f"n{k}.png")
    info = ModelInfo(
        (0, 255),
        ("background", "nucleus"),
        size_divisor=4,
        dataset="dsb2018",
        label_mode="union",
        test_images=((str(case / "images" / "c1.png"), *map(str, masks)),),
    )
    import keras

    keras.utils.set_random_seed(0)
    attach_info(build_model(ModelConfig(base_filters=4, depth=2), 2), info).save(tmp_path / "m.keras")
    assert (
        predict_main(
            [
                "--weights",
                str(tmp_path / "m.keras"),
                "--out",
                str(tmp_path / "o"),
                "--tile",
                "32",
                "--overlap",
                "8",
                "--no-overlay",
            ]
        )
        == 0
    )
    with open(tmp_path / "o" / "metrics.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["image"] == "c1" and r["class"] == "nucleus")
    assert int(row["tp"]) + int(row["fn"]) == 3 * 10 * 12  # all three nuclei, not only n0.png


def test_stack_predicts_page_by_page_like_single_files(tmp_path, tem_model):
    """A 5-page 16-bit stack gives a 5-page mask equal to predicting each page as its own file."""
    rng = np.random.default_rng(4)
    pages = rng.integers(0, 60000, (5, 48, 40)).astype(np.uint16)
    stack = tmp_path / "in" / "stack.tif"
    stack.parent.mkdir()
    tifffile.imwrite(
        stack,
        pages,
        photometric="minisblack",
        resolution=(1 / 0.25, 1 / 0.25),
        imagej=True,
        metadata={"unit": "um", "axes": "ZYX"},
    )
    singles = tmp_path / "singles"
    singles.mkdir()
    for k, page in enumerate(pages):
        tifffile.imwrite(singles / f"p{k}.tif", page)
    common = ["--weights", str(tem_model), "--tile", "32", "--overlap", "8", "--no-overlay"]
    assert predict_main([*common, "--input", str(stack), "--out", str(tmp_path / "a")]) == 0
    assert predict_main([*common, "--input", str(singles), "--out", str(tmp_path / "b")]) == 0
    masks = tifffile.imread(tmp_path / "a" / "stack_mask.tif")
    assert masks.shape == (5, 48, 40)
    for k in range(5):
        np.testing.assert_array_equal(masks[k], read_image(tmp_path / "b" / f"p{k}_mask.tif"))
    with open(tmp_path / "a" / "objects.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["page"] for r in rows} <= {"1", "2", "3", "4", "5"} and rows
    assert all(abs(float(r["pixel_size_um"]) - 0.25) < 1e-9 for r in rows)  # read from the ImageJ metadata
    from unet_tf.io.metadata import pixel_size_um

    assert abs(pixel_size_um(tmp_path / "a" / "stack_mask.tif")[0] - 0.25) < 1e-9  # the mask carries it


def test_label_stack_with_other_page_count_is_an_error(tmp_path, tem_model, capsys):
    stack = tmp_path / "s.tif"
    tifffile.imwrite(stack, np.zeros((3, 32, 32), np.uint16), photometric="minisblack")
    labels = tmp_path / "labels"
    labels.mkdir()
    tifffile.imwrite(labels / "s_mask.tif", np.zeros((2, 32, 32), np.uint8), photometric="minisblack")
    code = predict_main(
        [
            "--weights",
            str(tem_model),
            "--input",
            str(stack),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "o"),
            "--tile",
            "32",
            "--overlap",
            "8",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "s_mask.tif: 2 page(s), but the image s.tif has 3" in err
    assert not (tmp_path / "o").exists()


def test_stream_flag_writes_the_whole_image_mask(tmp_path, tem_model):
    """predict.py --stream (band-wise, memory O(band x width)) gives the whole-image path's mask and objects."""
    image = tmp_path / "big.tif"
    tifffile.imwrite(image, np.random.default_rng(7).integers(0, 60000, (200, 150)).astype(np.uint16))
    common = ["--weights", str(tem_model), "--input", str(image), "--tile", "32", "--overlap", "8", "--no-overlay"]
    assert predict_main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert predict_main([*common, "--out", str(tmp_path / "stream"), "--stream"]) == 0
    whole, streamed = (tifffile.imread(tmp_path / d / "big_mask.tif") for d in ("whole", "stream"))
    np.testing.assert_array_equal(whole, streamed)
    counts = [len((tmp_path / d / "objects.csv").read_text().splitlines()) for d in ("whole", "stream")]
    assert counts[0] == counts[1] > 1


def test_track_channel_and_z_flags(tmp_path, tem_model, capsys):
    from unet_tf.cli.predict import build_parser, track_config_from_args

    args = build_parser().parse_args(["--weights", "w.keras", "--track", "--channel", "1", "--z", "0"])
    options = track_config_from_args(args)
    assert (options.channel, options.z) == (1, 0)
    stack = tmp_path / "tc.tif"
    tifffile.imwrite(stack, np.zeros((3, 2, 16, 16), np.uint8), imagej=True, metadata={"axes": "TCYX"})
    base = ["--weights", str(tem_model), "--input", str(stack), "--out", str(tmp_path / "o"), "--split-touching"]
    assert predict_main([*base, "--track"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tc.tif: axes TCYX (T=3, C=2)" in err and "--channel" in err
    assert predict_main([*base, "--channel", "0"]) == 2
    assert "need --track" in capsys.readouterr().err


def test_constant_and_nearly_empty_images_predict_finite_probabilities(tmp_path, tem_model):
    """A constant image and a 99 %-zero one (both percentiles equal) go through predict.py: finite
    probabilities, equal to the library's on the image as percentile_normalize's fallback maps it
    (test_preprocessing checks that fallback against an identity network)."""
    import unet_tf
    from unet_tf.data.normalize import percentile_normalize

    folder = tmp_path / "in"
    folder.mkdir()
    sparse = np.zeros((48, 40), np.uint8)
    sparse[5:7, 5:7] = 90
    tifffile.imwrite(folder / "flat.tif", np.full((48, 40), 7, np.uint8))
    tifffile.imwrite(folder / "sparse.tif", sparse)
    out = tmp_path / "out"
    args = ["--weights", str(tem_model), "--input", str(folder), "--out", str(out), "--tile", "32", "--overlap", "8"]
    assert predict_main([*args, "--save-probabilities"]) == 0
    model = unet_tf.load_model(tem_model, precision="auto")  # predict.py's default precision
    for stem, image in (("flat", np.zeros((48, 40))), ("sparse", percentile_normalize(sparse))):
        prob = tifffile.imread(out / f"{stem}_prob.tif")
        assert np.isfinite(prob).all()
        expected = unet_tf.predict_image(model, image.astype(np.float32) * 1000, tile=32, overlap=8).probabilities
        np.testing.assert_allclose(np.moveaxis(prob, 0, -1), expected, atol=1e-5)


def test_diameter_flag(tmp_path, capsys):
    """--diameter reaches PredictConfig; a value that is not a positive number is one line, before any loading."""
    from unet_tf.cli.predict import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args(["--weights", "m.keras", "--diameter", "31.5"])).diameter == 31.5
    assert config_from_args(build_parser().parse_args(["--weights", "m.keras"])).diameter is None
    for bad in ("-1", "0", "nan"):
        code = predict_main(["--weights", str(tmp_path / "missing.keras"), "--diameter", bad])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert "diameter" in err and "must be a positive number of px" in err


def test_a_stack_of_channels_is_refused_naming_both_channel_counts(tmp_path, tem_model, capsys):
    stack = tmp_path / "two.tif"
    tifffile.imwrite(stack, np.zeros((2, 32, 32), np.uint16), imagej=True, metadata={"axes": "CYX"})
    code = predict_main(["--weights", str(tem_model), "--input", str(stack), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "two.tif: holds 2 channels (axes CYX, 2)" in err[0] and "the model reads 1 channel" in err[0]
    assert not (tmp_path / "o").exists()


def test_weights_may_name_a_cross_validation_folder(tmp_path, images, tem_model):
    """--weights FOLDS (train.py --folds K): two identical fold models give the single model's probabilities;
    outputs go into the folder by default."""
    import shutil

    folds = tmp_path / "cv"
    for k in (1, 2):
        (folds / f"fold-{k}").mkdir(parents=True)
        shutil.copy(tem_model, folds / f"fold-{k}" / "best.keras")
    common = ["--input", str(images[0] / "a.tif"), "--tile", "32", "--overlap", "8", "--save-probabilities"]
    assert predict_main(["--weights", str(tem_model), *common, "--out", str(tmp_path / "one")]) == 0
    assert predict_main(["--weights", str(folds), *common]) == 0
    single = tifffile.imread(tmp_path / "one" / "a_prob.tif")
    np.testing.assert_allclose(tifffile.imread(folds / "predictions" / "a_prob.tif"), single, atol=1e-6)
