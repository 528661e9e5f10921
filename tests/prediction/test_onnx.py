"""OnnxModel: the same probabilities as Keras through predict_tiled, and no TensorFlow."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(bare Keras network, path of its ONNX export, info) of a tiny 3-class model."""
    from _helpers import tiny_model_file

    from unet_tf.export import load_for_export
    from unet_tf.export.onnx import write_onnx

    folder = tmp_path_factory.mktemp("onnx")
    weights, _ = tiny_model_file(folder / "best.keras", 3)
    bare, info = load_for_export(weights)
    return bare, write_onnx(bare, info, folder / "model.onnx"), info


def test_predict_tiled_with_onnx_equals_keras(exported):
    from unet_tf.prediction.onnx import load_onnx
    from unet_tf.prediction.tiled import make_predict_fn, predict_tiled

    bare, path, info = exported
    model = load_onnx(path, threads=2)
    assert isinstance(info, ModelInfo) and model.info == info  # the same ModelInfo travels
    image = np.random.default_rng(0).normal(0.5, 0.3, (200, 150)).astype(np.float32)
    options = dict(tile=64, overlap=16, batch_size=3, size_divisor=info.size_divisor)
    with_onnx = predict_tiled(model, image, **options)
    with_keras = predict_tiled(make_predict_fn(bare), image, **options)
    assert with_onnx.shape == (200, 150, 3)
    assert np.max(np.abs(with_onnx - with_keras)) < 1e-4
    np.testing.assert_allclose(with_onnx.sum(-1), 1, atol=1e-4)


def test_bad_files_and_batches(exported, tmp_path):
    from unet_tf.prediction.onnx import load_onnx

    with pytest.raises(UserInputError, match="nothing.onnx: no such ONNX file"):
        load_onnx(tmp_path / "nothing.onnx")
    (tmp_path / "text.onnx").write_text("not a protobuf")
    with pytest.raises(UserInputError, match="text.onnx: cannot open this ONNX model"):
        load_onnx(tmp_path / "text.onnx")
    with pytest.raises(ValueError, match=r"\(B, h, w, 1\)"):
        load_onnx(exported[1])(np.zeros((64, 64, 1), np.float32))


SCRIPT = """
import sys, numpy as np
{prelude}
from unet_tf.prediction.onnx import load_onnx
model = load_onnx(sys.argv[1])
out = model(np.zeros((1, 64, 64, 1), np.float32))
assert out.shape == (1, 64, 64, 3), out.shape
heavy = sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))
print(' '.join(heavy[:5]))
"""
# Imports unet_tf.prediction.onnx without running unet_tf/__init__.py (which may load Keras).
STUB_PACKAGE = (
    f"import types; pkg = types.ModuleType('unet_tf'); pkg.__path__ = [{str(REPO / 'unet_tf')!r}]; "
    "sys.modules['unet_tf'] = pkg"
)


def _heavy_modules(exported, prelude: str) -> str:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(prelude=prelude), str(exported[1])],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_onnx_model_module_imports_no_tensorflow(exported):
    assert _heavy_modules(exported, STUB_PACKAGE) == ""


@pytest.mark.slow  # the probe imports unet_tf, i.e. TensorFlow until issue 10 lands
def test_whole_package_path_imports_no_tensorflow(exported):
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, unet_tf; print('keras' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if probe.stdout.strip() == "True":
        pytest.skip("import unet_tf still loads Keras (lazy public API: issue 10)")
    assert _heavy_modules(exported, "") == ""
