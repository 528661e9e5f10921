"""Write the golden model files that ``tests/models/test_golden.py`` loads.

DO NOT RERUN THIS SCRIPT AFTER THE PACKAGE RE-LAYOUT (or after any change to
unet_tf's Keras objects, losses, metrics or ModelInfo). The files it wrote are
the point: they were written by unet_tf 0.1 with its flat module layout, and
the test proves that files from that layout keep loading and predicting the
same after every step of the move. Regenerating them with newer code would
test nothing.

What it writes into ``tests/golden/`` (all from seed 0):

- ``unet_v0.1.keras``: a tiny U-Net (base filters 4, depth 2, bottleneck
  self-attention ``ModelConfig.attention=True``, FusedBatchNormalization) for
  two classes (one sigmoid channel), built and compiled by
  :func:`unet_tf.training.compile_model` (loss ``auto`` = WeightedBCE +
  Tversky as a CombinedLoss; metrics Dice, IoU, pixel accuracy; Adam) with its
  ModelInfo (:func:`unet_tf.training.model_info_for`), trained for 2 steps on
  random 32 px patches of the project's own pipeline, saved by ``model.save``
  as the run's checkpoints are.
- ``unet3_v0.1.keras``: the same for three classes (softmax; loss
  WeightedCategoricalCE + Tversky; also per-class Dice metrics).
- ``unet_v0.1.onnx``: the two-class model exported by
  :func:`unet_tf.export.export_model` (``formats=("onnx",)``; the exporter checks
  it against Keras with onnxruntime).
- ``input.npy``: float32 (1, 32, 32, 1), the fixed test input.
- ``expected.npy`` / ``expected3_v0.1.npy``: the two models' outputs on it,
  float32 (1, 32, 32, 1) and (1, 32, 32, 3).
- ``info_v0.1.json`` / ``info3_v0.1.json``: their ModelInfo dicts.

Command (from the repository root, once, before the re-layout)::

    python tests/golden/make_golden.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
SIZE = 32


def tiny_data(class_values, names, rng):
    """TrainingData of four random 48 px images whose labels are their own thresholded values."""
    from unet_tf import TrainingData

    images = [rng.random((48, 48)).astype(np.float32) for _ in range(4)]
    edges = np.linspace(0, 1, len(class_values) + 1)[1:-1]
    masks = [np.asarray(class_values, np.uint8)[np.digitize(im, edges)] for im in images]
    return TrainingData.from_arrays(images, masks, class_values, names, seed=SEED)


def write_model(path: Path, class_values, names):
    """Build, compile, train 2 steps and save one model the way unet_tf.training does; return it and its info."""
    import keras

    from unet_tf import load_config
    from unet_tf.training.run import class_balance, compile_model, load_arrays, model_info_for, patch_datasets

    cfg = load_config(
        None,
        base_filters=4,
        depth=2,
        attention=True,
        patch_size=SIZE,
        batch_size=2,
        patches_per_image=2,
        seed=SEED,
        precision="float32",
    )
    data = tiny_data(class_values, names, np.random.default_rng(SEED))
    arrays = load_arrays(data, cfg, print)
    balance = class_balance(arrays.train_masks, data.spec, print)
    keras.utils.set_random_seed(SEED)
    info = model_info_for(cfg, data)
    model = compile_model(cfg, info, data.spec, balance)
    train, _ = patch_datasets(cfg, arrays, data.spec, balance)
    model.fit(train().take(2), epochs=1, verbose=0)
    model.save(path)
    return model, info


def main() -> None:
    import unet_tf
    from unet_tf.export import export_model

    x = np.random.default_rng(SEED).normal(0.5, 0.3, (1, SIZE, SIZE, 1)).astype(np.float32)
    np.save(HERE / "input.npy", x)
    for stem, values, names, out, info_name in (
        ("unet_v0.1", (0, 255), ("background", "cell"), "expected.npy", "info_v0.1.json"),
        ("unet3_v0.1", (0, 1, 2), ("background", "cell", "border"), "expected3_v0.1.npy", "info3_v0.1.json"),
    ):
        path = HERE / f"{stem}.keras"
        model, info = write_model(path, values, names)
        expected = np.asarray(model(x, training=False), np.float32)
        again = np.asarray(unet_tf.load_model(path)(x, training=False), np.float32)
        assert np.allclose(again, expected, atol=1e-6), "the saved model does not give the in-memory output"
        np.save(HERE / out, expected)
        (HERE / info_name).write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        (written,) = export_model(HERE / "unet_v0.1.keras", Path(tmp) / "export", formats=("onnx",))
        shutil.copy(written, HERE / "unet_v0.1.onnx")
    for p in sorted(HERE.iterdir()):
        print(f"{p.name}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
