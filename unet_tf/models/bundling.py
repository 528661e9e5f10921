"""Writing a trained model into the bundled folder (:mod:`unet_tf.models.bundled` finds it by name).

Kept apart from the finder: finding needs no TensorFlow, writing loads and saves the model.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import keras

from unet_tf.errors import UserInputError
from unet_tf.models.bundled import CARD_SUFFIX, DEFAULT_ROOT, FOLDER_README, MODEL_SUFFIX
from unet_tf.models.file import INFO_LAYER, attach_info, load_model_and_info


def bundle_model(source: str | Path, name: str, card: str, root: str | Path | None = None) -> Path:
    """Write a trained model into the bundled folder as ``<name>.keras`` with its card ``<name>.md``.

    Args:
        source: str or Path. A model file written by unet_tf (a run's ``best.keras``).
        name: str. The bundled name (``nuclei``): letters, digits, ``-`` and ``_``.
        card: str. The model card (Markdown); its first line is the one-line summary.
        root: str, Path or None. The folder; None: :data:`DEFAULT_ROOT`, the package's own.

    Returns:
        Path of the written model file: float32, without optimizer state, and without the paths of the
        machine it was trained on (``ModelInfo.data_dir`` and ``test_images`` are cleared; the card says
        what the data was).
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name == FOLDER_README:
        raise UserInputError(f"bundled name {name!r}: use letters, digits, - and _ only")
    if not card.strip():
        raise UserInputError(f"bundled model {name}: the card is empty (its first line is the summary)")
    model, info = load_model_and_info(source)
    info = dataclasses.replace(info, data_dir=None, test_images=())
    folder = DEFAULT_ROOT if root is None else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}{MODEL_SUFFIX}"
    partial = folder / f".{name}.partial{MODEL_SUFFIX}"
    network = keras.Model(model.input, model.get_layer(INFO_LAYER).input, name=model.name)
    attach_info(network, info).save(partial)
    partial.replace(target)
    (folder / f"{name}{CARD_SUFFIX}").write_text(card.rstrip() + "\n", encoding="utf-8")
    return target


__all__ = ["bundle_model"]
