"""The web app: Streamlit AppTest flows over tiny models, its Streamlit-free helpers, its command line.

The page's files are compared byte for byte with what predict.py writes for
the same model, image and options; every user mistake must end as an
``st.error`` naming the file, with the page still serving.
"""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
import tifffile
from _helpers import TEM_NAMES, TEM_VALUES, save_model

from unet_tf.app import PAGE, logic
from unet_tf.cli.app import app_environment, streamlit_command
from unet_tf.cli.app import main as app_main
from unet_tf.errors import UserInputError

AppTest = pytest.importorskip("streamlit.testing.v1", reason="streamlit is not installed").AppTest
TIMEOUT = 180  # s per script run: the first one loads TensorFlow on a loaded machine


def tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tem_model_file):
    """A runs folder: a binary model (no summary) and a 5-class TEM model (val. Dice 0.61)."""
    root = tmp_path_factory.mktemp("runs")
    (root / "cells-unet-b").mkdir()
    save_model(root / "cells-unet-b" / "best.keras", [0, 255], ["background", "cell"])
    (root / "tem-unet-a").mkdir()
    shutil.copyfile(tem_model_file, root / "tem-unet-a" / "best.keras")  # the session's TEM model
    (root / "tem-unet-a" / "summary.json").write_text(json.dumps({"best": {"dice": 0.61, "iou": 0.5}}))
    return root


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.random.default_rng(1).integers(0, 60000, (72, 88)).astype(np.uint16))
    return path


def start(runs, monkeypatch) -> AppTest:
    monkeypatch.setenv("UNET_TF_APP_RUNS", str(runs))
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def predict_py(weights, image, out, *args) -> None:
    from unet_tf.cli.predict import main as predict_main

    assert (
        predict_main(
            ["--weights", str(weights), "--input", str(image), "--out", str(out), "--save-probabilities", *args]
        )
        == 0
    )


def errors(at) -> list[str]:
    return [e.value for e in at.error]


# === AppTest flows ===


def test_choose_model_upload_threshold_and_files_as_predict_py(runs, image, tmp_path, monkeypatch):
    at = start(runs, monkeypatch)
    labels = at.sidebar.selectbox(key="model").options
    assert [label for label in labels if "(bundled)" not in label] == [
        "cells-unet-b · folder · 2 classes · Dice n/a",
        "tem-unet-a · folder · 5 classes · val. Dice 0.610",
    ]
    assert labels[-1].startswith("nuclei (bundled) · folder · 3 classes · ")  # the package's pretrained model
    at.sidebar.selectbox(key="model").select_index(0).run()
    assert not at.sidebar.slider(key="threshold").disabled  # binary model: the threshold applies
    at.file_uploader(key="images").set_value(("a.tif", image.read_bytes(), "image/tiff")).run()
    assert not at.exception and not errors(at)
    weights = runs / "cells-unet-b" / "best.keras"
    for threshold in (0.5, 0.01):
        if threshold != 0.5:
            at.sidebar.slider(key="threshold").set_value(threshold).run()
        out = tmp_path / f"cli{threshold}"
        predict_py(weights, image, out, "--threshold", str(threshold))
        files = at.session_state["downloads"]
        assert set(files) == {"a_mask.tif", "a_overlay.png", "a_prob.tif", "objects.csv", "objects_summary.csv"}
        for name, data in files.items():
            assert data == (out / name).read_bytes(), name  # the very bytes predict.py writes
        mask = tifffile.imread(out / "a_mask.tif")
        areas = at.dataframe[0].value
        assert areas["pixels"].tolist() == [int((mask == 0).sum()), int((mask == 255).sum())]
        objects = at.dataframe[2].value
        assert len(objects) == len((out / "objects.csv").read_text().splitlines()) - 1
    assert int((mask == 255).sum()) > 0  # at 0.01 the cell class is present


def test_label_gives_metrics_table_as_predict_py(runs, image, tmp_path, monkeypatch):
    from unet_tf.evaluation.semantic import Evaluator

    truth = np.random.default_rng(2).choice(TEM_VALUES, (72, 88)).astype(np.uint8)
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "labels" / "a_mask.tif", truth)
    at = start(runs, monkeypatch)
    at.sidebar.selectbox(key="model").select_index(1)
    at.sidebar.number_input(key="pixel_size").set_value(0.5)
    at.file_uploader(key="images").set_value(("a.tif", image.read_bytes(), "image/tiff"))
    at.file_uploader(key="labels").set_value(
        ("a_mask.tif", (tmp_path / "labels" / "a_mask.tif").read_bytes(), "image/tiff")
    ).run()
    assert not at.exception and not errors(at)
    assert at.sidebar.slider(key="threshold").disabled  # 5 classes: no threshold
    out = tmp_path / "cli"
    predict_py(
        runs / "tem-unet-a" / "best.keras", image, out, "--labels", str(tmp_path / "labels"), "--pixel-size", "0.5"
    )
    files = at.session_state["downloads"]
    for name in ("metrics.csv", "objects.csv", "objects_summary.csv", "a_mask.tif"):
        assert files[name] == (out / name).read_bytes(), name
    evaluator = Evaluator(TEM_NAMES)
    evaluator.add(
        "a",
        (truth[..., None] == np.array(TEM_VALUES)).argmax(-1),
        (tifffile.imread(out / "a_mask.tif")[..., None] == np.array(TEM_VALUES)).argmax(-1),
    )
    assert at.code[0].value == evaluator.format_table()
    assert "area_um2" in at.dataframe[2].value.columns  # µm columns shown once a pixel size is given


def test_user_mistakes_are_errors_naming_the_file(runs, image, tmp_path, monkeypatch):
    import keras

    at = start(runs, monkeypatch)
    at.sidebar.selectbox(key="model").select_index(1)
    stack = io.BytesIO()
    tifffile.imwrite(stack, np.zeros((3, 16, 20), np.uint8), photometric="minisblack")
    at.file_uploader(key="images").set_value(
        [
            ("notes.txt", b"hello", "text/plain"),
            ("broken.png", b"not a png", "image/png"),
            ("stack.tif", stack.getvalue(), "image/tiff"),
            ("a.tif", image.read_bytes(), "image/tiff"),
        ]
    )
    at.file_uploader(key="labels").set_value(
        ("a_mask.tif", tiff_bytes(np.full((72, 88), 7, np.uint8)), "image/tiff")
    ).run()
    assert not at.exception
    shown = errors(at)
    assert any(m.startswith("notes.txt: unknown image type '.txt'") for m in shown), shown
    assert any(m.startswith("broken.png: not a readable image") for m in shown), shown
    assert any(m.startswith("stack.tif: is a multi-page TIFF stack (3 pages)") for m in shown), shown
    assert any(m.startswith("a_mask.tif: label values 7 are not among") for m in shown), shown
    assert not any("/tmp" in m or "Traceback" in m for m in shown), shown
    assert at.session_state["downloads"]["a_mask.tif"]  # the good image was still segmented

    at.sidebar.radio(key="source").set_value("Upload a .keras file").run()
    plain = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 1)])
    plain.save(tmp_path / "plain.keras")
    for name, data, message in (
        (
            "plain.keras",
            (tmp_path / "plain.keras").read_bytes(),
            "plain.keras: a Keras model, but not one written by unet_tf",
        ),
        ("junk.keras", b"hello", "junk.keras: not a .keras model file"),
    ):
        at.sidebar.file_uploader(key="model_file").set_value((name, data, "application/octet-stream")).run()
        assert not at.exception
        assert any(m.startswith(f"Model: {message}") for m in errors(at)), errors(at)
    good = (runs / "tem-unet-a" / "best.keras").read_bytes()
    at.sidebar.file_uploader(key="model_file").set_value(("mine.keras", good, "application/octet-stream")).run()
    assert not at.exception and "downloads" in at.session_state  # keeps serving: segments with the upload


def test_instances_checkbox_splits_touching_objects_like_predict_py(runs, image, tmp_path, monkeypatch):
    at = start(runs, monkeypatch)
    at.sidebar.selectbox(key="model").select_index(0)
    assert not at.sidebar.checkbox(key="instances").disabled  # a semantic model: --split-touching on demand
    at.sidebar.slider(key="threshold").set_value(0.01)
    at.sidebar.checkbox(key="instances").check()
    at.file_uploader(key="images").set_value(("a.tif", image.read_bytes(), "image/tiff")).run()
    assert not at.exception and not errors(at)
    out = tmp_path / "cli"
    predict_py(runs / "cells-unet-b" / "best.keras", image, out, "--threshold", "0.01", "--split-touching")
    files = at.session_state["downloads"]
    assert "a_instances.tif" in files
    for name, data in files.items():
        assert data == (out / name).read_bytes(), name  # instances and one object row per instance included


# === Helpers without Streamlit ===


def test_find_models_reads_info_and_dice_without_loading(runs, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "best.keras").write_bytes(b"junk")
    none = tmp_path / "no_bundle"  # the package's bundled models (if any) come after the runs' (test_bundled.py)
    entries = logic.find_models(runs, none) + logic.find_models(tmp_path, none)
    assert [(e.run, e.dataset, e.class_names, e.dice) for e in entries] == [
        ("cells-unet-b", "folder", ("background", "cell"), None),
        ("tem-unet-a", "folder", tuple(TEM_NAMES), 0.61),
        ("broken", "?", (), None),
    ]
    assert logic.find_models(tmp_path / "missing", none) == []
    with pytest.raises(UserInputError, match="best.keras: not a model written by unet_tf"):
        logic.peek_info(tmp_path / "broken" / "best.keras")


def test_uploads_are_read_at_full_depth_and_errors_name_the_upload():
    array = np.arange(40000, 40000 + 12 * 10, dtype=np.uint16).reshape(12, 10)
    np.testing.assert_array_equal(logic.read_upload("x.tif", tiff_bytes(array)), array)
    floats = np.linspace(-1, 1, 30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_array_equal(logic.read_upload("f.tiff", tiff_bytes(floats)), floats)
    with pytest.raises(UserInputError) as exc:
        logic.read_upload("my scan.png", b"\x89PNG broken")
    assert str(exc.value).startswith("my scan.png: not a readable image") and "/tmp" not in str(exc.value)


def test_pair_labels_matches_like_predict_py():
    images = ["a.tif", "raw_01.tif", "b.png"]
    assert logic.pair_labels(images, ["a_mask.png", "label_01.tif", "zzz.png"]) == {
        "a.tif": "a_mask.png",
        "raw_01.tif": "label_01.tif",
    }
    assert logic.pair_labels(["scan.tif"], ["truth.png"]) == {"scan.tif": "truth.png"}


def test_class_areas_histogram_and_zip():
    from unet_tf.models.file import ModelInfo

    ids = np.zeros((4, 5), np.uint8)
    ids[0, :2] = 1
    ids[3, 4] = 2
    info = ModelInfo((0, 50, 100), ("bg", "a", "b"))
    rows = logic.class_areas(ids, info, pixel_size=0.5)
    assert [(r["class"], r["value"], r["pixels"], r["percent"], r["area_um2"]) for r in rows] == [
        ("bg", 0, 17, 85.0, 4.25),
        ("a", 50, 2, 10.0, 0.5),
        ("b", 100, 1, 5.0, 0.25),
    ]
    objects = [{"class": "a", "area_px": a} for a in (1, 2, 2, 9)] + [{"class": "b", "area_px": 5}]
    hist = logic.area_histogram(objects, bins=4)
    assert [h["area (px)"] for h in hist] == ["1–3", "3–5", "5–7", "7–9"]
    assert [h["a"] for h in hist] == [3, 0, 0, 1] and [h["b"] for h in hist] == [0, 0, 1, 0]
    assert logic.legend(("bg", "a", "b")) == [("a", "#e6194b"), ("b", "#3cb44b")]
    files = {"x_mask.tif": b"\x00\x01", "objects.csv": b"image,class\n"}
    packed = logic.zip_bytes(files)
    assert packed == logic.zip_bytes(files)  # deterministic
    with zipfile.ZipFile(io.BytesIO(packed)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == files


def test_command_line(tmp_path, capsys):
    command = streamlit_command(8600)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4] == str(PAGE)
    flags = dict(zip(command[5::2], command[6::2]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert app_environment(str(tmp_path))["UNET_TF_APP_RUNS"] == str(tmp_path.resolve())
    assert app_main(["--port", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --port 0")
