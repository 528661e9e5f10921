"""The widgets in a real napari viewer (``make_napari_viewer``, pytest-qt, Xvfb from pytest-xvfb), in this process.

The viewer draws with whatever OpenGL the machine has (Mesa's llvmpipe without a GPU driver), and the models
run in the plugin's model process, so this process must never load TensorFlow: llvmpipe's LLVM and
TensorFlow's crash in one process, whichever comes first. The tests check that it did not. A pytest session
that also runs other tests (which import TensorFlow) cannot host the viewer: there the viewer tests are
skipped and :func:`test_viewer_in_a_session_of_its_own` runs this file again in a fresh pytest.

``UNET_TF_SCREENSHOT=1`` writes the README's ``docs/napari.png`` (both widgets, the bundled ``nuclei`` model on a
GOWT1 frame) at the end of the loop test:
``UNET_TF_DATA=../shared/data UNET_TF_SCREENSHOT=1 python -m pytest -n 0 tests/napari/test_napari_viewer.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("pytest_xvfb")
if not (shutil.which("Xvfb") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("no display for Qt: no Xvfb (apt-get install xvfb; .ci/run does)", allow_module_level=True)

HERE = Path(__file__).resolve()
SCREENSHOT = HERE.parents[2] / "docs" / "napari.png"
WAIT_MS = 120_000


def _alone(session) -> bool:
    """True when this session runs only this file's tests and has not loaded TensorFlow."""
    return "tensorflow" not in sys.modules and all(Path(item.path) == HERE for item in session.items)


@pytest.fixture(scope="module")
def model_worker(request):
    """The plugin's shared model process, kept running for the module (each widget detaches on closing)."""
    if not _alone(request.session):
        pytest.skip("TensorFlow is (or will be) loaded in this session: run in a fresh pytest (see below)")
    from unet_tf.napari.worker import shared_worker

    worker = shared_worker()
    worker.attach()
    yield worker
    worker.detach()
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules  # the viewer's process never loaded it


@pytest.fixture(scope="module")
def model_file(model_worker, tmp_path_factory):
    """A tiny untrained instance model, made in the model process."""
    return Path(model_worker.run("napari_helpers:tiny_model", tmp_path_factory.mktemp("widgets") / "best.keras"))


def _viewer(make_napari_viewer):
    from unet_tf.napari.widgets import RetrainWidget, SegmentWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    segment, retrain = SegmentWidget(viewer), RetrainWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(retrain, name="Correct and retrain")
    return viewer, segment, retrain


def _segment(qtbot, widget, model: Path, image_name: str):
    widget.model_file.value = str(model)
    widget.tile.value, widget.overlap.value = 128, 16
    widget.image.reset_choices()
    widget.image.value = image_name
    widget.segment()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def _finetune(qtbot, retrain, labels, folder: Path):
    labels.data = labels.data.copy()
    retrain.labels_layer.reset_choices()
    retrain.labels_layer.value, retrain.folder.value = labels.name, str(folder)
    retrain.add_pair()
    assert (folder / "masks" / "synthetic_TEM.tif").is_file(), retrain.status.value
    retrain.steps.value = 2
    retrain.start_finetune()
    qtbot.waitUntil(lambda: not retrain.busy, timeout=WAIT_MS)
    assert retrain.last_run is not None, retrain.status.value
    return retrain.last_run


@pytest.mark.slow  # about 30 s on 2 cores: the model process starts TensorFlow, then a tiny fine-tuning
def test_segment_correct_add_finetune_resegment(make_napari_viewer, qtbot, model_worker, model_file, tmp_path):
    from unet_tf.napari.sample import tem_sample

    viewer, segment, retrain = _viewer(make_napari_viewer)
    for data, kwargs, kind in tem_sample(128):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    canvas = viewer.screenshot(canvas_only=True)
    assert canvas.shape[0] >= 300 and canvas.shape[1] >= 300, canvas.shape  # the docks leave the canvas room
    assert canvas.std() > 5  # and the image is drawn
    _segment(qtbot, segment, model_file, "synthetic TEM")
    labels = viewer.layers["synthetic TEM labels"]
    assert labels.metadata["unet_tf"]["model"] == str(model_file), segment.status.value
    labels.data = viewer.layers["synthetic TEM objects"].data.copy()  # the user's corrections
    labels.data[:8, :8] = labels.data.max() + 1
    run = _finetune(qtbot, retrain, labels, tmp_path / "train")
    assert run.model.is_file() and run.run_dir.parent == tmp_path / "train" / "runs"
    assert labels.metadata["unet_tf"]["model"] == str(run.model) and "fine-tuned on 1 pair" in retrain.status.value
    again = model_worker.segment(run.model, viewer.layers["synthetic TEM"].data, segment.config(), "again")
    np.testing.assert_array_equal(labels.data, again.labels)  # the layer is the new model's segmentation
    if os.environ.get("UNET_TF_SCREENSHOT") == "1":
        _readme_screenshot(viewer, segment, qtbot)


def _readme_screenshot(viewer, segment, qtbot):
    """docs/napari.png: the bundled ``nuclei`` model on a GOWT1 frame (from ``UNET_TF_DATA``) in this viewer."""
    import tifffile

    frame = Path(os.environ.get("UNET_TF_DATA", "data")) / "Fluo-N2DH-GOWT1" / "02" / "t010.tif"
    if not frame.is_file():
        pytest.skip(f"{frame} is absent: the README screenshot shows a GOWT1 frame")
    viewer.layers.clear()
    viewer.window._qt_window.resize(1500, 900)
    viewer.add_image(tifffile.imread(frame), name="GOWT1 02 t010", contrast_limits=(0, 45))
    segment.model_file.line_edit.value = ""  # as a user clears the field (setting .value "" gives the cwd)
    segment.tile.value, segment.overlap.value = 512, 64
    segment.model.reset_choices()
    segment.model.value = "nuclei"
    segment.image.reset_choices()
    segment.image.value = "GOWT1 02 t010"
    segment.segment()
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    assert "GOWT1 02 t010 labels" in viewer.layers, segment.status.value
    labels = viewer.layers["GOWT1 02 t010 labels"]
    assert labels.data.max() >= 15, segment.status.value  # 22 nuclei in this frame
    labels.opacity = 0.45
    viewer.layers.selection.active = labels
    viewer.reset_view()
    viewer.screenshot(str(SCREENSHOT), canvas_only=False)
    assert SCREENSHOT.stat().st_size > 10_000


def test_bad_input_is_a_line_in_the_widget(make_napari_viewer, qtbot, model_file, tmp_path):
    viewer, segment, retrain = _viewer(make_napari_viewer)
    viewer.add_image(np.zeros((3, 64, 64), np.uint16), name="stack")
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="colour", rgb=True)
    _segment(qtbot, segment, model_file, "stack")
    assert segment.status.value.startswith("error: layer 'stack': a stack of shape (3, 64, 64)")
    foreign = tmp_path / "foreign.keras"
    foreign.write_bytes(b"not a model")
    _segment(qtbot, segment, foreign, "colour")
    assert segment.status.value.startswith("error:") and "foreign.keras" in segment.status.value
    _segment(qtbot, segment, model_file, "colour")  # RGB: segmented as luminance
    labels = viewer.layers["colour labels"]
    retrain.labels_layer.reset_choices()
    retrain.labels_layer.value = labels.name
    retrain.add_pair()
    assert retrain.status.value == "error: no training folder: choose where the corrected pairs go"
    retrain.folder.value = str(tmp_path / "empty")
    retrain.start_finetune()
    qtbot.waitUntil(lambda: not retrain.busy, timeout=WAIT_MS)
    assert "no collected pairs yet" in retrain.status.value
    labels.data = np.zeros((32, 32), np.uint16)
    retrain.add_pair()
    assert "labels of shape (32, 32), but its image is (64, 64)" in retrain.status.value
    assert not (tmp_path / "empty" / "images").exists()


def test_closing_the_viewer_lets_go_of_the_model_process(make_napari_viewer, qtbot, model_worker):
    users = model_worker.users  # the module's own hold: the process runs until the module ends
    viewer, _, _ = _viewer(make_napari_viewer)
    assert model_worker.users == users + 2
    viewer.close()
    qtbot.waitUntil(lambda: model_worker.users == users, timeout=5000)  # each widget detached as it closed


@pytest.mark.slow  # about 55 s: a fresh pytest, napari, the model process with TensorFlow, a tiny fine-tuning
def test_viewer_in_a_session_of_its_own(request, tmp_path):
    if _alone(request.session):
        pytest.skip("the viewer tests ran in this process")
    root = HERE.parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    args = ["-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--rootdir", str(root)]
    done = subprocess.run(
        [sys.executable, *args, "--basetemp", str(tmp_path / "base")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 passed, 1 skipped" in done.stdout, done.stdout[-2000:]
