"""Run an exported ``model.onnx`` with onnxruntime: segmentation without TensorFlow.

The exporter (:mod:`unet_tf.export`) writes the model's info dict (class values
and names, normalization, patch size, size divisor, ...) into the ONNX file's
``metadata_props``: :data:`TAG_KEY` = :data:`TAG` marks a unet_tf file and
:data:`INFO_KEY` holds the whole dict as JSON, so a ``model.onnx`` alone is
enough to predict, like a ``best.keras``. A few fields are repeated under their
own keys for people reading the file in Netron.

This module imports neither TensorFlow nor Keras: only NumPy and onnxruntime.
An :class:`OnnxModel` is a ``predict_fn`` for
:func:`unet_tf.prediction.tiled.predict_tiled`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo

TAG_KEY = "format"
TAG = "unet_tf"
INFO_KEY = "unet_tf_info"
READABLE_KEYS = ("class_values", "class_names", "normalize", "size_divisor", "patch_size", "unet_tf_version")


def metadata_props(info: dict) -> dict[str, str]:
    """The ``metadata_props`` (str -> str) that mark and describe a unet_tf ONNX file."""
    props = {TAG_KEY: TAG, INFO_KEY: json.dumps(info, sort_keys=True)}
    for key in READABLE_KEYS:
        if key in info:
            props[key] = json.dumps(info[key])
    return props


def info_from_metadata(props: dict[str, str], source: str | Path = "ONNX file") -> dict:
    """The info dict stored by :func:`metadata_props`; UserInputError naming ``source`` if absent."""
    if props.get(TAG_KEY) != TAG or INFO_KEY not in props:
        raise UserInputError(
            f"{source}: an ONNX model, but not one exported by unet_tf (no '{TAG_KEY}: {TAG}' "
            "metadata); unet_tf reads the ONNX files that unet-tf-export writes"
        )
    try:
        info = json.loads(props[INFO_KEY])
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{source}: damaged unet_tf metadata ({exc})") from None
    if not isinstance(info, dict) or "class_values" not in info or "size_divisor" not in info:
        raise UserInputError(f"{source}: damaged unet_tf metadata (no class values or size divisor)")
    return info


def default_threads() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxModel:
    """An onnxruntime session on a unet_tf ONNX file, callable like ``make_predict_fn``'s result.

    Attributes:
        info: ModelInfo, the same as the Keras model's (rebuilt from the metadata).
        path: Path of the file.
        session: the ``onnxruntime.InferenceSession``.
    """

    def __init__(self, session, info: ModelInfo, path: Path):
        self.session = session
        self.info = info
        self.path = path
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities float32 (B, h, w, K) for a normalized batch float32 (B, h, w, 1).

        ``h`` and ``w`` must be multiples of ``info.size_divisor``. K is 1
        (P(class 1), sigmoid) for a two-class model, else the number of classes.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 1:
            raise ValueError(f"batch must be (B, h, w, 1), got shape {batch.shape}")
        return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0], np.float32)


def load_onnx(path: str | Path, threads: int | None = None) -> OnnxModel:
    """Open a ``model.onnx`` written by ``unet-tf-export``.

    Args:
        path: str or Path of the ONNX file.
        threads: int or None. onnxruntime intra-op threads; default
            :func:`default_threads` (all cores this process may use; with
            one inter-op thread, the best setting on a small CPU).

    Returns:
        :class:`OnnxModel`. A missing file, a file that is not ONNX, or an
        ONNX model without unet_tf metadata is a UserInputError naming the file.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserInputError(f"{path}: cannot open this ONNX model ({first[:200]})") from None
    info = info_from_metadata(session.get_modelmeta().custom_metadata_map, path)
    return OnnxModel(session, ModelInfo.from_dict(info), path)
