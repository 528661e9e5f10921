"""TensorFlow SavedModel export (endpoint ``serve``: image -> {"probabilities": ...}) and its check."""

from __future__ import annotations

from pathlib import Path

from unet_tf.export.checks import Log, check_sizes, keras_reference, max_difference, report_check


def write_savedmodel(bare, path: Path) -> Path:
    """``bare`` as a SavedModel folder with endpoint ``serve``: image -> {"probabilities": ...}."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(bare)
    archive.add_endpoint(
        name="serve",
        fn=lambda image: {"probabilities": bare(image, training=False)},
        input_signature=[tf.TensorSpec((None, None, None, 1), tf.float32, name="image")],
    )
    archive.write_out(str(path), verbose=False)
    return path


def check_savedmodel(bare, path: Path, size_divisor: int, log: Log) -> float:
    """Reload ``path`` with ``tf.saved_model.load`` and compare with ``bare``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    name = "SavedModel (tf.saved_model.load)"
    diff = max_difference(
        keras_reference(bare),
        lambda x: loaded.serve(x)["probabilities"].numpy(),
        check_sizes(size_divisor),
        name=f"{path}: {name}",
    )
    return report_check(name, diff, path, log)
