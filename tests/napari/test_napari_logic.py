"""The napari plugin's logic without Qt: models, gray planes, the training folder, writer, sample, manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from napari_helpers import tiny_model

from unet_tf.errors import UserInputError
from unet_tf.napari import logic


def test_model_choices_list_runs_newest_first(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.keras").write_bytes(b"x")
    choices = logic.model_choices(tmp_path)
    assert {str(Path("a") / "best.keras"), str(Path("b") / "best.keras")} <= set(choices)
    assert logic.model_choices(tmp_path / "missing") == logic.model_choices(None)


def test_a_foreign_model_file_is_one_line(tmp_path):
    foreign = tmp_path / "weights.h5"
    foreign.write_bytes(b"x")
    with pytest.raises(UserInputError, match="not a model file of unet_tf"):
        logic.open_model(foreign)
    with pytest.raises(UserInputError, match="no such ONNX file"):
        logic.open_model(tmp_path / "missing.onnx")
    with pytest.raises(UserInputError, match="choose a model"):
        logic.open_model("")


def test_gray_plane_reads_rgb_as_luminance_and_refuses_a_stack():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 100
    assert logic.gray_plane(rgb, rgb=True).tolist() == np.full((4, 5), 59).tolist()  # 0.587 * 100
    with pytest.raises(UserInputError, match="a stack of shape \\(2, 4, 5\\)"):
        logic.gray_plane(np.zeros((2, 4, 5)), name="movie")
    assert logic.gray_plane(np.ones((4, 5))).shape == (4, 5)


def test_add_pair_never_overwrites_unless_asked_and_train_reads_the_folder(tmp_path):
    from unet_tf.data.layouts import list_samples
    from unet_tf.io.images import read_label
    from unet_tf.io.metadata import pixel_size_um

    image, labels = np.arange(64, dtype=np.uint16).reshape(8, 8), np.zeros((8, 8), np.uint16)
    labels[2:5, 2:5] = 300
    first = logic.add_pair(tmp_path, "cells.tif", image, labels, pixel_size=0.5)
    second = logic.add_pair(tmp_path, "cells.tif", image, labels + 1)
    assert first[1].name == "cells.tif" and second[1].name == "cells_2.tif"
    assert read_label(first[1]).dtype == np.uint16 and read_label(first[1]).max() == 300
    assert pixel_size_um(first[1])[0] == pytest.approx(0.5)
    logic.add_pair(tmp_path, "cells.tif", image, labels * 0, replace=True)
    assert read_label(first[1]).max() == 0
    assert [s.image.stem for s in list_samples("folder", tmp_path)] == ["cells", "cells_2"]
    images, masks, stems = logic.read_pairs(tmp_path)
    assert stems == ["cells", "cells_2"] and masks[1].max() == 301
    with pytest.raises(UserInputError, match="no collected pairs yet"):
        logic.read_pairs(tmp_path / "empty")


def test_labels_must_match_their_image():
    with pytest.raises(UserInputError, match="labels of shape \\(3, 3\\), but its image is \\(4, 4\\)"):
        logic.check_labels(np.zeros((3, 3), np.uint16), np.zeros((4, 4)), "fixed")


def test_writer_writes_uint16_with_the_pixel_size(tmp_path):
    from unet_tf.io.images import read_label
    from unet_tf.io.metadata import pixel_size_um
    from unet_tf.napari.writer import write_labels

    data = np.zeros((6, 6), np.int32)
    data[1:3, 1:3] = 7
    (path,) = write_labels(str(tmp_path / "labels.tif"), data, {"scale": (0.25, 0.25)})
    assert read_label(path).dtype == np.uint16 and read_label(path).max() == 7
    assert pixel_size_um(path)[0] == pytest.approx(0.25)


def test_sample_data_is_an_image_with_its_labels():
    from unet_tf.napari.sample import tem_sample

    (image, _, kind), (objects, _, kind2), (classes, _, _) = tem_sample(64)
    assert (kind, kind2) == ("image", "labels") and image.shape == objects.shape == classes.shape == (64, 64)
    assert objects.max() > 0 and set(np.unique(classes)) <= {0, 50, 100, 150, 200}


def test_manifest_is_valid_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    import importlib

    manifest = npe2.PluginManifest.from_file(Path(logic.__file__).with_name("napari.yaml"))
    for command in manifest.contributions.commands:
        module, name = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), name)), command.id


@pytest.mark.parametrize("instances", [True, False])
def test_labels_equal_what_predict_writes(tmp_path, instances):
    from unet_tf.cli.predict import main
    from unet_tf.io.images import read_label
    from unet_tf.io.writers import write_tiff
    from unet_tf.synthetic.image import generate_tem_sample

    model_file = tiny_model(tmp_path / "best.keras", instances=instances)
    image = generate_tem_sample(96, seed=3).image
    write_tiff(tmp_path / "scan.tif", image)
    assert main(["--weights", str(model_file), "--input", str(tmp_path / "scan.tif"), "--out", str(tmp_path / "out"),
                 "--tile", "64", "--overlap", "16", "--threshold", "0.34"]) == 0  # fmt: skip
    model = logic.open_model(model_file)[0]
    seg = logic.segment(model, image, logic.predict_config(tile=64, overlap=16, threshold=0.34))
    written = read_label(tmp_path / "out" / f"scan_{'instances' if instances else 'mask'}.tif")
    assert seg.kind == ("instances" if instances else "classes") and seg.labels.dtype == written.dtype
    np.testing.assert_array_equal(seg.labels, written)
    assert written.any()  # not vacuous: objects or a foreground class
