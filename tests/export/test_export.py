"""unet-tf-export on tiny models: ONNX and SavedModel match Keras, bioimage.io validates, bad input."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml
from _helpers import CLASSES, INFO, tiny_model_file

from unet_tf.cli.export import main as export_main
from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def keras_probabilities(path, x):
    from unet_tf.export import load_for_export

    bare, _ = load_for_export(path)
    return bare(x, training=False).numpy()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {n: tiny_model_file(folder / f"m{n}.keras", n) for n in CLASSES}


@pytest.mark.parametrize("n_classes", [2, 3])
def test_onnx_equals_keras_on_two_sizes_and_carries_the_info(model_files, tmp_path, n_classes):
    from unet_tf.prediction.onnx import load_onnx

    weights, info = model_files[n_classes]
    assert export_main(["--weights", str(weights), "--out", str(tmp_path / "out"), "--format", "onnx"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
    onnx_model = load_onnx(tmp_path / "out" / "model.onnx")
    rng = np.random.default_rng(1)
    for shape in ((2, 64, 64, 1), (1, 96, 128, 1)):
        x = rng.normal(0.5, 0.3, shape).astype(np.float32)
        expected = keras_probabilities(weights, x)
        got = onnx_model(x)
        assert got.shape == shape[:3] + (1 if n_classes == 2 else n_classes,)
        assert np.max(np.abs(got - expected)) < 1e-4
    assert onnx_model.info.to_dict() == ModelInfo.from_dict(info).to_dict()  # the same ModelInfo travels
    import onnx

    proto = onnx.load(tmp_path / "out" / "model.onnx")
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 18
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:3] == ["batch", "y", "x"] and proto.graph.output[0].name == "probabilities"


def test_savedmodel_reloads_with_a_dict_endpoint_and_matches(model_files, tmp_path, capsys):
    import tensorflow as tf

    weights, _ = model_files[3]
    assert export_main(["--weights", str(weights), "--out", str(tmp_path / "out"), "--format", "savedmodel"]) == 0
    assert "SavedModel (tf.saved_model.load): max abs difference" in capsys.readouterr().out
    loaded = tf.saved_model.load(str(tmp_path / "out" / "savedmodel"))
    x = np.random.default_rng(2).random((1, 96, 128, 1), np.float32)
    result = loaded.serve(tf.constant(x))
    assert list(result) == ["probabilities"]
    np.testing.assert_allclose(result["probabilities"].numpy(), keras_probabilities(weights, x), atol=1e-5)
    np.testing.assert_allclose(result["probabilities"].numpy().sum(-1), 1, atol=1e-5)  # softmax head


@pytest.mark.slow  # a fresh process that imports Keras
def test_bare_network_loads_with_plain_keras_without_unet_tf(model_files, tmp_path):
    from unet_tf.export import load_for_export
    from unet_tf.export.checks import custom_layers

    bare, _ = load_for_export(model_files[3][0])
    assert custom_layers(bare) == [] and "unet_tf_info" not in [layer.name for layer in bare.layers]
    bare.save(tmp_path / "bare.keras")
    x = np.random.default_rng(3).random((1, 64, 64, 1), np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", bare(x).numpy())
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.models.load_model({str(tmp_path / 'bare.keras')!r})\n"
        f"x, y = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'y.npy')!r})\n"
        "assert np.abs(m(x).numpy() - y).max() < 1e-6\n"
        "assert not [n for n in sys.modules if n.startswith('unet_tf')], 'unet_tf was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]


def test_attention_layers_are_named_as_needing_unet_tf():
    from unet_tf.config import ModelConfig
    from unet_tf.export.checks import custom_layers
    from unet_tf.models import build_model

    model = build_model(ModelConfig(base_filters=4, depth=2, attention=True), 3)
    assert any("FlattenSpatial" in name for name in custom_layers(model))


@pytest.mark.slow
def test_bioimageio_package_passes_test_model_offline(tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.core")
    import tifffile

    from unet_tf.synthetic import generate_tem_image

    image, _ = generate_tem_image(80, seed=3)
    tifffile.imwrite(tmp_path / "holdout.tif", image)
    weights, info = tiny_model_file(tmp_path / "best.keras", 2, test_images=[(tmp_path / "holdout.tif",)])
    monkeypatch.chdir(tmp_path)
    backend = os.environ.get("KERAS_BACKEND")
    assert export_main(["--weights", str(weights), "--out", "out", "--format", "bioimageio"]) == 0
    assert os.environ.get("KERAS_BACKEND") == backend  # bioimageio.core's setting does not leak
    package = tmp_path / "out" / "bioimageio"
    rdf = yaml.safe_load((package / "rdf.yaml").read_text())
    assert set(rdf["weights"]) == {"keras_v3", "onnx", "tensorflow_saved_model_bundle"}
    y_axis = rdf["inputs"][0]["axes"][1]
    assert y_axis["id"] == "y" and y_axis["size"] == {"min": 4, "step": 4}
    step = rdf["inputs"][0]["preprocessing"][0]
    assert step["id"] == "scale_range" and (step["kwargs"]["min_percentile"], step["kwargs"]["max_percentile"]) == (
        2,
        98,
    )
    assert rdf["outputs"][0]["axes"][-1]["channel_names"] == ["membrane"]  # sigmoid head: P(class 1)
    x = np.load(package / "test_input.npy")
    assert x.shape == (1, 80, 80, 1)  # the recorded test image, 80 px, a multiple of 4
    np.testing.assert_array_equal(x[0, :, :, 0], image.astype(np.float32))
    readme = (package / "README.md").read_text()
    assert "## Validation" in readme and readme.count("| passed |") == 3
    with zipfile.ZipFile(tmp_path / "out" / "bioimageio.zip") as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in package.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "holdout.tif", "out"]  # nothing else
    from bioimageio.core import test_model

    assert test_model(tmp_path / "out" / "bioimageio.zip", weight_format="onnx").status == "passed"


def test_a_foreign_onnx_file_is_a_clear_error(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    from unet_tf.prediction.onnx import load_onnx

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 4, 1]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign", io[:1], io[1:])
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "foreign.onnx"
    )
    with pytest.raises(UserInputError, match="foreign.onnx: an ONNX model, but not one exported by unet_tf"):
        load_onnx(tmp_path / "foreign.onnx")
    assert export_main(["--weights", str(tmp_path / "foreign.onnx"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "foreign.onnx: an ONNX model, but not one exported by unet_tf" in err
    assert "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.onnx"]


@pytest.mark.parametrize("case", ["unknown format", "out is under a file", "out is a file"])
def test_bad_format_and_unwritable_out_are_one_line_errors(model_files, tmp_path, capsys, case):
    (tmp_path / "file").write_text("x")
    out = {
        "unknown format": tmp_path / "out",
        "out is under a file": tmp_path / "file" / "out",
        "out is a file": tmp_path / "file",
    }[case]
    extra = ["--format", "onnx,tflite"] if case == "unknown format" else []
    assert export_main(["--weights", str(model_files[2][0]), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert ("tflite" in err) if case == "unknown format" else (str(out) in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_failed_check_writes_nothing(model_files, tmp_path, monkeypatch, capsys):
    from unet_tf.export import checks

    monkeypatch.setattr(checks, "ATOL", 0.0)  # any float difference now fails the ONNX check
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    assert export_main(["--weights", str(model_files[3][0]), "--out", str(tmp_path / "out"), "--format", "onnx"]) == 2
    assert "ONNX (onnxruntime) output differs from the Keras model" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt", "out"]


def test_metadata_round_trip_and_check_sizes():
    from unet_tf.export import parse_formats
    from unet_tf.export.checks import check_sizes
    from unet_tf.prediction.onnx import info_from_metadata, metadata_props

    info = {**INFO, "class_values": [0, 50, 100], "class_names": ["a", "b", "c"]}
    props = metadata_props(info)
    assert props["format"] == "unet_tf" and json.loads(props["class_values"]) == [0, 50, 100]
    assert info_from_metadata(props) == info
    with pytest.raises(UserInputError, match="m.onnx: an ONNX model, but not one exported by unet_tf"):
        info_from_metadata({"format": "other"}, "m.onnx")
    assert check_sizes(4) == ((64, 64), (96, 128)) and check_sizes(32) == ((64, 64), (96, 128))
    assert check_sizes(128) == ((128, 128), (256, 384))
    assert parse_formats("ONNX, bioimageio,onnx") == ("onnx", "bioimageio")
    with pytest.raises(UserInputError, match=r"`formats` onnx,tflite: unknown format tflite; choose from onnx, "):
        parse_formats("onnx,tflite")


def test_library_errors_name_the_arguments(model_files, tmp_path):
    from unet_tf.export import export_model

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match=r"`out` .*file: exists and is not a folder"):
        export_model(model_files[2][0], tmp_path / "file", ("onnx",))
    with pytest.raises(UserInputError, match=r"`out` .*cannot write here \(.*file is a file"):
        export_model(model_files[2][0], tmp_path / "file" / "out", "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_export_reads_the_model_info_as_model_info(model_files, n_classes):
    from unet_tf.export import load_for_export
    from unet_tf.export.bioimageio import config_section, output_channels

    weights, info = model_files[n_classes]
    _, loaded = load_for_export(weights)
    assert isinstance(loaded, ModelInfo) and loaded == ModelInfo.from_dict(info)
    names = list(CLASSES[n_classes][1])
    assert output_channels(loaded) == (names[1:] if n_classes == 2 else names)  # a sigmoid head: P(class 1)
    section = config_section(loaded)
    assert section["class_names"] == names and section["normalize"] == {"pmin": 2.0, "pmax": 98.0, "clip": False}
    assert yaml.safe_load(yaml.safe_dump(section)) == section  # plain YAML: lists, not tuples


def test_cover_colours_only_foreground_classes():
    from unet_tf.export.bioimageio import COVER_COLOURS, cover_image

    image = np.tile(np.arange(8, dtype=np.uint16), (4, 1))
    ids = np.zeros((4, 8), np.uint8)
    ids[1, 2], ids[2, 5] = 1, 2
    rgb = cover_image(image, ids)
    assert rgb.shape == (4, 16, 3) and rgb.dtype == np.uint8
    background = ids == 0
    np.testing.assert_array_equal(rgb[:, 8:][background], rgb[:, :8][background])  # right half = left half there
    gray = float(rgb[1, 2, 0])
    np.testing.assert_allclose(rgb[1, 8 + 2], (0.55 * gray + 0.45 * COVER_COLOURS[0]).astype(np.uint8))
    np.testing.assert_allclose(rgb[2, 8 + 5], (0.55 * rgb[2, 5, 0] + 0.45 * COVER_COLOURS[1]).astype(np.uint8))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_predict_py_with_onnx_writes_the_keras_mask(model_files, tmp_path, n_classes):
    """predict.py --weights model.onnx: the same tiling, normalization and outputs as with best.keras."""
    import tifffile

    from unet_tf.cli.predict import main as predict_main

    weights, _ = model_files[n_classes]
    assert export_main(["--weights", str(weights), "--out", str(tmp_path / "e"), "--format", "onnx"]) == 0
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.random.default_rng(5).integers(0, 4000, (90, 70)).astype(np.uint16))
    common = ["--input", str(image), "--tile", "32", "--overlap", "8", "--save-probabilities", "--no-overlay"]
    assert predict_main(["--weights", str(weights), "--out", str(tmp_path / "k"), *common]) == 0
    assert predict_main(["--weights", str(tmp_path / "e" / "model.onnx"), "--out", str(tmp_path / "o"), *common]) == 0
    keras_mask = tifffile.imread(tmp_path / "k" / "img_mask.tif")
    onnx_mask = tifffile.imread(tmp_path / "o" / "img_mask.tif")
    prob = tifffile.imread(tmp_path / "k" / "img_prob.tif")  # (K', H, W)
    top2 = np.sort(prob, axis=0)[-2:]
    close = (top2[1] - top2[0]) < 2e-4  # a tie within the tolerance may flip either way
    assert np.array_equal(keras_mask[~close], onnx_mask[~close])
    assert (keras_mask != onnx_mask).sum() <= close.sum()


def test_a_shape_mismatch_names_the_exported_format():
    from unet_tf.export.checks import ExportCheckError, max_difference

    wrapped = r"ONNX model\.onnx gives shape \(1, 2, 64, 64, 1\), Keras \(2, 64, 64, 1\)"
    with pytest.raises(ExportCheckError, match=wrapped):
        max_difference(lambda x: x, lambda x: [x], [(64, 64)], name="ONNX model.onnx")  # a 1-list: one axis more
    assert max_difference(lambda x: x, lambda x: x + 0.25, [(64, 64)]) == pytest.approx(0.25)


def test_onnx_output_is_4d_when_tf2onnx_converts_the_output_transpose_after_removing_the_identity(
    model_files, tmp_path, monkeypatch
):
    """The flaky bioimage.io failure "ONNX gives shape (1, 2, 64, 64, 1), Keras (2, 64, 64, 1)", made certain.

    tf2onnx turns the sigmoid head's last Transpose into a Reshape to (1, B, H, W, 1) plus a Squeeze that it
    wires to consumers only. Whether the graph's output Identity is removed before that happens depends on the
    order tf2onnx visits its nodes (sets of node objects, ordered by memory address, so by what the process did
    before). Skipping the transpose optimizer's first Transpose -> Reshape pass forces the bad order every time.
    """
    import onnx
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    from unet_tf.prediction.onnx import load_onnx

    original, calls = TransposeOptimizer.post_optimize_action, []

    def late(self):  # the first pass leaves the Transpose: the Identity optimizer runs before it becomes a Reshape
        calls.append(len(calls))
        if len(calls) > 1:
            original(self)

    monkeypatch.setattr(TransposeOptimizer, "post_optimize_action", late)
    weights, _ = model_files[2]
    assert export_main(["--weights", str(weights), "--out", str(tmp_path / "out"), "--format", "onnx"]) == 0
    proto = onnx.load(tmp_path / "out" / "model.onnx")
    assert len(calls) > 1 and "unet_tf_squeeze" in proto.graph.node[-1].name  # tf2onnx's 5-D output, repaired
    assert [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [
        "batch",
        "y",
        "x",
        1,
    ]
    x = np.random.default_rng(6).normal(0.5, 0.3, (3, 96, 128, 1)).astype(np.float32)
    got = load_onnx(tmp_path / "out" / "model.onnx")(x)
    assert got.shape == (3, 96, 128, 1)
    np.testing.assert_allclose(got, keras_probabilities(weights, x), atol=1e-4)


def _unsqueezing_graph(leading: int):
    """ONNX graph x (B, H, W, 1) -> Unsqueeze(axis 0) -> output (leading, B, H, W, 1) (leading 1 or "n")."""
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "h", "w", 1])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [leading, "b", "h", "w", 1])
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"])
    return helper.make_graph([node], "g", [inp], [out], [axes])


def test_squeeze_leading_unit_axes_restores_rank_4_and_names_a_bad_shape():
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from unet_tf.export.checks import ExportCheckError
    from unet_tf.export.onnx import name_and_label_io, squeeze_leading_unit_axes

    graph = _unsqueezing_graph(1)
    assert squeeze_leading_unit_axes(graph) == 1 and squeeze_leading_unit_axes(graph) == 0  # idempotent
    name_and_label_io(graph)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert graph.output[0].name == "probabilities" and dims == ["batch", "y", "x", 1]
    x = np.arange(2 * 4 * 8, dtype=np.float32).reshape(2, 4, 8, 1)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(["probabilities"], {"x": x})[0], x)
    with pytest.raises(ExportCheckError, match=r"m\.onnx: output shape \['n', 'b', 'h', 'w', 1\], expected rank 4"):
        squeeze_leading_unit_axes(_unsqueezing_graph("n"), source="m.onnx")
