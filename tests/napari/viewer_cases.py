"""The widgets in a real (headless) napari viewer: segment, correct, add, fine-tune, re-segment; bad input.

Run by ``test_napari_viewer.py`` in a fresh interpreter (not collected on its own): napari's
``make_napari_viewer`` fixture (pytest-qt) on Xvfb started by pytest-xvfb. TensorFlow is imported before the
first OpenGL context: Mesa's software renderer loads its own LLVM, and TensorFlow's LLVM crashes when it is
loaded after it (and, the other way round, at the interpreter's exit; the runner ends with ``os._exit``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow  # noqa: F401  (before any OpenGL context, see the module docstring)
from napari_helpers import tiny_model

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "napari.png"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("widgets") / "best.keras")


def _widgets(viewer):
    from unet_tf.napari.widgets import RetrainWidget, SegmentWidget

    segment, retrain = SegmentWidget(viewer), RetrainWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(retrain, name="Correct and retrain")
    return segment, retrain


def _segment(qtbot, widget, model: Path, image_name: str):
    widget.model_file.value = str(model)
    widget.tile.value, widget.overlap.value = 128, 16
    widget.image.reset_choices()
    widget.image.value = image_name
    widget.segment()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def test_segment_correct_add_finetune_resegment(make_napari_viewer, qtbot, model_file, tmp_path):
    from unet_tf.models.file import load_model
    from unet_tf.napari import logic
    from unet_tf.napari.sample import tem_sample

    viewer = make_napari_viewer()
    for data, kwargs, kind in tem_sample(128):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    segment, retrain = _widgets(viewer)
    _segment(qtbot, segment, model_file, "synthetic TEM")
    labels = viewer.layers["synthetic TEM labels"]
    assert labels.metadata["unet_tf"]["model"] == str(model_file), segment.status.value
    labels.data = viewer.layers["synthetic TEM objects"].data.copy()  # the user's corrections
    labels.data[:8, :8] = labels.data.max() + 1
    retrain.labels_layer.reset_choices()
    retrain.labels_layer.value, retrain.folder.value = labels.name, str(tmp_path / "train")
    retrain.add_pair()
    assert (tmp_path / "train" / "masks" / "synthetic_TEM.tif").is_file(), retrain.status.value
    retrain.steps.value = 2
    retrain.start_finetune()
    qtbot.waitUntil(lambda: not retrain.busy, timeout=WAIT_MS)
    run = retrain.last_run
    assert run is not None, retrain.status.value
    new_model = run.run_dir / "best.keras"
    assert new_model.is_file() and run.run_dir.parent == tmp_path / "train" / "runs"
    assert labels.metadata["unet_tf"]["model"] == str(new_model)
    image = viewer.layers["synthetic TEM"].data
    expected = logic.segment(load_model(new_model), image, logic.config_from_meta(labels.metadata["unet_tf"]))
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert "fine-tuned on 1 pair" in retrain.status.value
    SCREENSHOT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(SCREENSHOT), canvas_only=False)
    assert SCREENSHOT.stat().st_size > 10_000


def test_bad_input_is_a_line_in_the_widget(make_napari_viewer, qtbot, model_file, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 64, 64), np.uint16), name="stack")
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="colour", rgb=True)
    segment, retrain = _widgets(viewer)
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
