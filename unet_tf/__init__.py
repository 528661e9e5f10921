"""unet_tf: U-Net segmentation of microscopy images with Keras 3 / TensorFlow.

The public API, for notebooks and scripts (the command lines call the same
functions)::

    import unet_tf

    cfg = unet_tf.load_config(None, dataset="tem", epochs=2)
    summary = unet_tf.train(cfg)                      # or train(cfg, data=TrainingData.from_arrays(...))
    model = unet_tf.load_model(summary["run_dir"] + "/best.keras")
    result = unet_tf.predict_image(model, image)      # .ids, .probabilities, .mask
    rows = unet_tf.evaluate(truth_ids, result.ids, unet_tf.read_info(model).class_names)
    objects = unet_tf.measure_objects(result.ids, unet_tf.read_info(model).class_names)

Importing the package is light: TensorFlow loads on first use of a name that
needs it (PEP 562 lazy attributes). Those names also register unet_tf's Keras
objects, so ``keras.models.load_model("best.keras")`` works after any of them
(or after ``import unet_tf.models``); if Keras is already imported when
unet_tf is, they are registered at once.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .onednn import prefer_onednn  # noqa: E402  (before anything loads TensorFlow)

prefer_onednn()

__version__ = "0.1.0"

# public name -> (module, attribute); light ones import no TensorFlow
_LIGHT = {
    "RunConfig": "config",
    "DataConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "NormalizeConfig": "config",
    "AugmentConfig": "config",
    "PredictConfig": "config",
    "AblationConfig": "config",
    "load_config": "config",
    "replace_config": "config",
    "ModelInfo": "model_file",
    "UserInputError": "errors",
    "evaluate": "evaluation",
    "Evaluator": "evaluation",
    "measure_objects": "morphometry",
    "percentile_normalize": "preprocessing",
    "read_image": "io",
    "read_label": "io",
    "values_to_ids": "preprocessing",
    "TrainingData": "datasets",
}
_MODEL_FACING = {
    "build_model": "models",
    "build_unet": "models",
    "build_resunet": "models",
    "load_model": "model_file",
    "read_info": "model_file",
    "train": "training",
    "predict_image": "prediction",
    "Prediction": "prediction",
    "predict_files": "prediction",
}
__all__ = sorted([*_LIGHT, *_MODEL_FACING, "__version__"])


def __getattr__(name: str):
    module = _LIGHT.get(name) or _MODEL_FACING.get(name)
    if module is None:
        raise AttributeError(f"module 'unet_tf' has no attribute {name!r}")
    if name in _MODEL_FACING:
        importlib.import_module(".native_logs", __name__).import_tensorflow()
        importlib.import_module(".model_file", __name__).register_keras_objects()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


if "keras" in sys.modules:  # Keras is loaded already: registering costs nothing
    importlib.import_module(".model_file", __name__).register_keras_objects()
