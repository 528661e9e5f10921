"""What the exporter and the bioimage.io packager share: the check error and the custom-layer test."""

from __future__ import annotations

from ..errors import UserInputError


class ExportCheckError(UserInputError):
    """An exported file disagrees with the Keras model by more than :data:`ATOL`."""


def custom_layers(model) -> list[str]:
    """Names of the layers of ``model`` that are not plain Keras layers (they need unet_tf to load)."""
    return [
        f"{layer.name} ({type(layer).__name__})"
        for layer in model.layers
        if not type(layer).__module__.startswith("keras.")
    ]
