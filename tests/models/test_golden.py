"""Golden files written by unet_tf 0.1 (flat module layout) keep loading and giving the same output.

``tests/golden/`` was written once by ``tests/golden/make_golden.py`` before
the package re-layout and must never be regenerated: these tests are what
proves that every step of the move keeps old ``best.keras`` / ``model.onnx``
files working (registered Keras names ``unet_tf>...``, the ModelInfo layer,
the compiled loss and metrics) and the public names importable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unet_tf

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MODELS = {  # file stem -> (expected output, ModelInfo dict)
    "unet_v0.1": ("expected.npy", "info_v0.1.json"),
    "unet3_v0.1": ("expected3_v0.1.npy", "info3_v0.1.json"),
}


def golden_input() -> np.ndarray:
    return np.load(GOLDEN / "input.npy")


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_golden_keras_file_loads_and_predicts_the_same(stem):
    """unet_tf.load_model reads the old file: same output (atol 1e-5) and the same ModelInfo."""
    expected_file, info_file = MODELS[stem]
    model = unet_tf.load_model(GOLDEN / f"{stem}.keras")
    out = np.asarray(model(golden_input(), training=False))
    np.testing.assert_allclose(out, np.load(GOLDEN / expected_file), atol=1e-5, rtol=0)

    stored = json.loads((GOLDEN / info_file).read_text())
    info = unet_tf.read_info(model)
    assert info == unet_tf.ModelInfo.from_dict(stored)
    # the dict itself too, read as the current format: format 4 added object_diameter and pixel_size_um, 5
    # foreground_threshold (None for older files); a later ModelInfo format changes this line on purpose, not
    # the file
    assert stored["format"] == 3 and "object_diameter" not in stored
    now = {**stored, "format": 5, "object_diameter": None, "pixel_size_um": None, "foreground_threshold": None}
    assert json.loads(json.dumps(info.to_dict())) == now
    assert info.object_diameter is None and info.pixel_size_um is None
    assert info.model.attention and info.model.base_filters == 4 and info.model.depth == 2


# Run in a fresh process: in this one, other imports have registered every unet_tf Keras object already.
COMPILED_LOAD = r"""
import json, sys
from pathlib import Path

import numpy as np

import keras

from unet_tf.models import register_keras_objects

register_keras_objects()  # the documented way to load a best.keras with Keras alone

golden = Path(sys.argv[1])
x = np.load(golden / "input.npy")
report = {}
for stem, expected in json.loads(sys.argv[2]).items():
    model = keras.models.load_model(golden / f"{stem}.keras", compile=True)
    k = model.output_shape[-1]
    if k == 1:
        y = (x > 0.5).astype("float32")
    else:
        y = np.eye(k, dtype="float32")[np.digitize(x[..., 0], np.linspace(0, 1, k + 1)[1:-1])]
    scores = model.evaluate(x, y, verbose=0, return_dict=True)
    out = model.predict(x, verbose=0)
    report[stem] = {
        "loss": type(model.loss).__name__,
        "parts": [[type(p).__name__, p.get_config()] for p in model.loss.losses],
        "direct_loss": float(model.loss(y, out)),
        "scores": {name: float(v) for name, v in scores.items()},
        "diff": float(np.max(np.abs(out - np.load(golden / expected)))),
    }
print("REPORT " + json.dumps(report))
"""


def test_golden_keras_file_loads_compiled_with_keras_alone():
    """keras.models.load_model(compile=True) after register_keras_objects(): loss, metrics and output restored."""
    expected = {stem: files[0] for stem, files in MODELS.items()}
    run = subprocess.run(
        [sys.executable, "-c", COMPILED_LOAD, str(GOLDEN), json.dumps(expected)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.split("REPORT ", 1)[1])

    cross_entropy = {"unet_v0.1": "WeightedBCE", "unet3_v0.1": "WeightedCategoricalCE"}
    extra_metrics = {"unet_v0.1": set(), "unet3_v0.1": {"dice_cell", "dice_border"}}
    for stem, r in report.items():
        assert r["diff"] <= 1e-5, stem
        assert r["loss"] == "CombinedLoss"
        assert [name for name, _ in r["parts"]] == [cross_entropy[stem], "Tversky"]
        tversky = r["parts"][1][1]
        assert (tversky["alpha"], tversky["beta"]) == (0.3, 0.7)
        assert set(r["scores"]) == {"loss", "dice", "iou", "pixel_accuracy"} | extra_metrics[stem]
        assert all(np.isfinite(v) for v in r["scores"].values()), r["scores"]
        assert 0.0 <= r["scores"]["pixel_accuracy"] <= 1.0
        assert r["scores"]["loss"] == pytest.approx(r["direct_loss"], rel=1e-4)


def test_golden_onnx_file_gives_the_keras_output():
    """onnxruntime on the old ONNX export: the Keras output (atol 1e-4) and the ModelInfo in its metadata."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(GOLDEN / "unet_v0.1.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    (out,) = session.run(None, {"image": golden_input()})
    np.testing.assert_allclose(out, np.load(GOLDEN / "expected.npy"), atol=1e-4, rtol=0)

    props = session.get_modelmeta().custom_metadata_map
    stored = json.loads((GOLDEN / "info_v0.1.json").read_text())
    assert props["format"] == "unet_tf" and json.loads(props["unet_tf_info"]) == stored
