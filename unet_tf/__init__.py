"""unet_tf: U-Net segmentation of microscopy images with Keras 3 / TensorFlow.

The public API, for notebooks and scripts (the command lines call the same
functions)::

    import unet_tf

    cfg = unet_tf.load_config(None, dataset="tem", epochs=2)
    summary = unet_tf.train(cfg)                      # or train(cfg, data=TrainingData.from_arrays(...))
    model = unet_tf.load_model(summary.best_path)     # summary: a RunSummary; .to_dict() is summary.json
    result = unet_tf.predict_image(model, image)      # .ids, .probabilities, .mask
    rows = unet_tf.evaluate(truth_ids, result.ids, unet_tf.read_info(model).class_names)
    objects = unet_tf.measure_objects(result.ids, unet_tf.read_info(model).class_names)

Importing the package is light: TensorFlow loads on first use of a name that
needs it (PEP 562 lazy attributes). Those names also register unet_tf's Keras
objects, so ``keras.models.load_model("best.keras")`` works after any of them
(or after ``unet_tf.models.register_keras_objects()``); if Keras is already imported when
unet_tf is, they are registered at once.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unet_tf.runtime import prefer_onednn  # noqa: E402  (before anything loads TensorFlow)

prefer_onednn()

__version__ = "0.2.0"

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
    "ModelInfo": "models.file",
    "UserInputError": "errors",
    "evaluate": "evaluation.semantic",
    "Evaluator": "evaluation.semantic",
    "measure_objects": "objects.morphometry",
    "percentile_normalize": "data.normalize",
    "read_image": "io.images",
    "read_label": "io.images",
    "values_to_ids": "data.normalize",
    "TrainingData": "data.splits",
}
_MODEL_FACING = {
    "build_model": "models",
    "build_unet": "models",
    "build_resunet": "models",
    "load_model": "models.file",
    "read_info": "models.file",
    "train": "training.run",
    "RunSummary": "training.run_folder",
    "predict_image": "prediction.image",
    "Prediction": "prediction.image",
    "predict_files": "prediction.files",
}
__all__ = sorted([*_LIGHT, *_MODEL_FACING, "__version__"])


def __getattr__(name: str):
    module = _LIGHT.get(name) or _MODEL_FACING.get(name)
    if module is None:
        raise AttributeError(f"module 'unet_tf' has no attribute {name!r}")
    if name in _MODEL_FACING:
        importlib.import_module(".runtime", __name__).import_tensorflow()
        importlib.import_module(".models.file", __name__).register_keras_objects()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


if "keras" in sys.modules:  # Keras is loaded already: registering costs nothing
    importlib.import_module(".models.file", __name__).register_keras_objects()
