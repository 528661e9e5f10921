"""The layer that carries a model's :class:`unet_tf.models.file.ModelInfo` inside ``best.keras``."""

from __future__ import annotations

import keras

INFO_LAYER = "unet_tf_info"


@keras.saving.register_keras_serializable(package="unet_tf", name="ModelInfo")
class InfoLayer(keras.layers.Layer):
    """Identity on the model output; carries the ModelInfo dict in its config (registered as unet_tf>ModelInfo)."""

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
