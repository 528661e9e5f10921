"""The public API: README's example runs, predict_image == predict.py, a light import."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unet_tf

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # README's example trains two small models
def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "notebook" / "best.keras").is_file()
    assert (tmp_path / "runs" / "arrays" / "best.keras").is_file()  # training on arrays writes a loadable model
    again = unet_tf.load_model(tmp_path / "runs" / "arrays" / "best.keras")
    assert unet_tf.read_info(again).dataset == "arrays"
    result = namespace["result"]
    assert result.mask.shape == namespace["image"].shape
    assert set(np.unique(result.mask)) <= {0, 50, 100, 150, 200}


def test_predict_image_equals_predict_py(tmp_path, tem_model_file):
    from unet_tf.cli.predict import main as predict_main
    from unet_tf.io.images import read_label
    from unet_tf.synthetic import write_tem_dataset

    write_tem_dataset(tmp_path / "d", n_train=1, n_test=1, size=96, seed=3)
    weights = tem_model_file
    image_path = tmp_path / "d" / "test" / "raw_00.tif"
    assert (
        predict_main(
            [
                "--weights",
                str(weights),
                "--input",
                str(image_path),
                "--out",
                str(tmp_path / "o"),
                "--tile",
                "32",
                "--overlap",
                "8",
            ]
        )
        == 0
    )
    model = unet_tf.load_model(weights, precision="auto")  # predict.py's default precision
    result = unet_tf.predict_image(model, unet_tf.read_image(image_path), tile=32, overlap=8)
    np.testing.assert_array_equal(result.mask, read_label(tmp_path / "o" / "raw_00_mask.tif"))
    assert result.probabilities.shape == (96, 96, 5)
    np.testing.assert_array_equal(result.ids, result.probabilities.argmax(-1))


def test_cli_import_leaves_tensorflow_out():
    code = (
        "import sys, unet_tf, unet_tf.cli.train, unet_tf.cli.predict; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout
    assert out.split() == ["False", "False"]


def test_lazy_names_resolve_and_register():
    for name in unet_tf.__all__:
        assert getattr(unet_tf, name) is not None
    import keras

    assert keras.saving.get_registered_object("unet_tf>ModelInfo") is not None


PUBLIC_NAMES = [
    "AblationConfig",
    "AugmentConfig",
    "DataConfig",
    "Evaluator",
    "ModelConfig",
    "ModelInfo",
    "NormalizeConfig",
    "PredictConfig",
    "Prediction",
    "RunConfig",
    "RunSummary",
    "TrainConfig",
    "TrainingData",
    "UserInputError",
    "__version__",
    "build_model",
    "build_resunet",
    "build_unet",
    "evaluate",
    "load_config",
    "load_model",
    "measure_objects",
    "percentile_normalize",
    "predict_files",
    "predict_image",
    "read_image",
    "read_info",
    "read_label",
    "replace_config",
    "train",
    "values_to_ids",
]


def test_public_names_are_pinned_and_import():
    """``unet_tf.__all__`` is exactly PUBLIC_NAMES, and every name still imports from ``unet_tf``.

    The list changes only on purpose (a name added to or removed from the
    public API), never as a side effect of moving modules: edit it in the same
    commit as the API change and say so in the commit message.
    """
    assert sorted(unet_tf.__all__) == PUBLIC_NAMES
    missing = [name for name in PUBLIC_NAMES if getattr(unet_tf, name, None) is None]
    assert not missing, f"unet_tf has no {missing}"
