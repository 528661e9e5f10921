"""The model file contract: ``best.keras`` alone is enough to predict.

A trained network ends in :class:`ModelInfo`, an identity layer whose config
holds what prediction needs: class values and names, normalization, training
patch size, the size divisor of the architecture, the dataset and its folder.
It is registered with Keras, so ``import unet_tf`` is all a loader needs.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from .errors import UserInputError

INFO_LAYER = "unet_tf_info"
FORMAT_VERSION = 1


@keras.saving.register_keras_serializable(package="unet_tf")
class ModelInfo(keras.layers.Layer):
    """Identity on the model output; carries the prediction metadata in its config."""

    def __init__(self, info: dict, **kwargs):
        kwargs.setdefault("name", INFO_LAYER)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.info = dict(info)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "info": self.info}


def attach_info(model: keras.Model, info: dict) -> keras.Model:
    """Wrap ``model`` so its output passes through a :class:`ModelInfo` layer."""
    info = {"format": FORMAT_VERSION, **info}
    output = ModelInfo(info)(model.output)
    return keras.Model(model.input, output, name=model.name)


def model_info(model: keras.Model) -> dict:
    """The metadata dict of a unet_tf model."""
    try:
        return dict(model.get_layer(INFO_LAYER).info)
    except ValueError:
        raise UserInputError(f"model '{model.name}' is not a unet_tf model (no {INFO_LAYER} layer)") from None


def load_model(path: str | Path, compile: bool = False) -> tuple[keras.Model, dict]:
    """Load a ``.keras`` file written by unet_tf; returns (model, info).

    A missing file, a file that is not a Keras archive, or a Keras model that
    unet_tf did not write is a UserInputError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such weights file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise UserInputError(f"{path}: not a .keras model file (train one with train.py)")
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as exc:  # Keras raises many types for a foreign or damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{path}: cannot load this model ({first[:200]})") from None
    try:
        info = model_info(model)
    except UserInputError:
        raise UserInputError(f"{path}: a Keras model, but not one written by unet_tf (no {INFO_LAYER} layer)") from None
    return model, info
