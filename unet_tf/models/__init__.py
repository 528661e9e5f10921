"""The networks and the model file.

- ``build.py``: :func:`build_model` (U-Net or Deep ResUNet from a :class:`unet_tf.config.ModelConfig`);
  ``unet.py``, ``resunet.py``, ``blocks.py``, ``fused_norm.py``: the Keras layers and builders.
- ``file.py``: the model file contract (:class:`ModelInfo` inside ``best.keras``, :func:`load_model`,
  :func:`read_info`), usable without TensorFlow; ``info_layer.py``: the layer that carries it.
- ``bundled.py``: pretrained models shipped in ``bundled/`` (a ``.keras`` file and its model card), usable
  by name wherever a model file is.

Importing this package is light (no Keras); the builders load on first use. To load a ``best.keras``
with Keras alone, call :func:`register_keras_objects` first (or use :func:`unet_tf.load_model`).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "build_model": "build",
    "check_input_size": "build",
    "resolved_depth": "build",
    "build_unet": "unet",
    "build_resunet": "resunet",
    "register_keras_objects": "file",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__():
    return __all__
