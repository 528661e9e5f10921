"""ONNX export: write the bare network through tf2onnx, fix the graph it leaves, check it with onnxruntime.

:func:`write_onnx` exports through Keras 3 (``model.export(format="onnx")``, tf2onnx
on the TensorFlow backend) at opset :data:`ONNX_OPSET`, then edits the graph
tf2onnx wrote: the output's rank (:func:`squeeze_leading_unit_axes`), its name
:data:`OUTPUT_NAME` and the dimension labels :data:`DIM_LABELS` of input and
output (:func:`name_and_label_io`), and stores the model's
:class:`~unet_tf.models.file.ModelInfo` in ``metadata_props``
(:func:`unet_tf.prediction.onnx.metadata_props`). :func:`check_onnx` compares
the file, run by onnxruntime, with the Keras network.

The rank needs the edit because tf2onnx (1.17) can return the output with a
leading unit axis: (1, B, H, W, K) instead of (B, H, W, K). With one output
channel (a two-class sigmoid head) its transpose optimizer turns the last NCHW
-> NHWC ``Transpose`` into a ``Reshape``, and its reshape optimizer rewrites
that ``Reshape`` as one to (1, B, H, W, 1) followed by a ``Squeeze`` of axis 0.
The ``Squeeze`` is wired to the ``Reshape``'s consumers only, never to a graph
output, so when the ``Identity`` that fed the output was removed first the graph
returns the ``Reshape``'s 5-D tensor and the ``Squeeze`` is dropped as unused.
Which comes first depends on the order in which tf2onnx visits its nodes, which
iterates sets of node objects (ordered by memory address): it changes from one
process to the next and with whatever the process allocated before the export.
:func:`squeeze_leading_unit_axes` puts the ``Squeeze`` back.
"""

from __future__ import annotations

from pathlib import Path

from unet_tf.export.checks import ExportCheckError, Log, check_sizes, keras_reference, max_difference, report_check
from unet_tf.models.file import ModelInfo
from unet_tf.prediction.onnx import load_onnx, metadata_props

ONNX_OPSET = 17  # DeepImageJ reads opsets up to 18
OUTPUT_NAME = "probabilities"
DIM_LABELS = ("batch", "y", "x")


def write_onnx(bare, info: ModelInfo, path: Path, opset: int = ONNX_OPSET) -> Path:
    """``bare`` as ONNX at ``path``: input ``image``, output ``probabilities``, ``info`` in the metadata.

    The output is (B, H, W, K) float32 even where tf2onnx leaves a leading unit
    axis on it (:func:`squeeze_leading_unit_axes`).
    """
    import logging

    import onnx
    import tensorflow as tf

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = [tf.TensorSpec((None, None, None, 1), tf.float32, name="image")]
    bare.export(str(path), format="onnx", input_signature=spec, opset_version=opset, verbose=False)
    proto = onnx.load(str(path))
    squeeze_leading_unit_axes(proto.graph, rank=4, source=str(path))  # tf2onnx may leave (1, B, H, W, 1)
    name_and_label_io(proto.graph)
    del proto.metadata_props[:]
    for key, value in metadata_props(info.to_dict()).items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "unet_tf"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def check_onnx(bare, path: Path, size_divisor: int, log: Log) -> float:
    """Compare ``path`` (onnxruntime) with ``bare`` on :func:`check_sizes`; return the max difference."""
    name = "ONNX (onnxruntime)"
    diff = max_difference(keras_reference(bare), load_onnx(path), check_sizes(size_divisor), name=f"{path}: {name}")
    return report_check(name, diff, path, log)


def _dims(value) -> list:
    """The ``TensorShapeProto.Dimension`` list of a graph input or output ``ValueInfoProto``."""
    return list(value.type.tensor_type.shape.dim)


def squeeze_leading_unit_axes(graph, rank: int = 4, source: str = "ONNX model") -> int:
    """Make ``graph``'s first output rank ``rank`` by squeezing leading axes of static size 1.

    Args:
        graph: ``onnx.GraphProto``, edited in place (a ``Squeeze`` node and its
            int64 ``axes`` initializer are appended; the output is renamed to
            the ``Squeeze``'s output and loses the squeezed dimensions).
        rank: int, the rank the output must have (4: (B, H, W, K)).
        source: str, names the file in the error.

    Returns:
        int, the number of axes squeezed (0 when the output already has ``rank``
        or its rank is unknown).

    An output of higher rank whose extra leading axes are not of static size 1
    is an :class:`ExportCheckError`.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    output = graph.output[0]
    dims = _dims(output)
    extra = len(dims) - rank
    if not output.type.tensor_type.HasField("shape") or extra <= 0:
        return 0
    if any(d.dim_value != 1 for d in dims[:extra]):
        shape = [d.dim_value or d.dim_param or "?" for d in dims]
        raise ExportCheckError(f"{source}: output shape {shape}, expected rank {rank}")
    old = output.name
    axes, squeezed = f"{old}__unet_tf_squeeze_axes", f"{old}__unet_tf_squeezed"
    graph.initializer.append(numpy_helper.from_array(np.arange(extra, dtype=np.int64), axes))
    graph.node.append(helper.make_node("Squeeze", [old, axes], [squeezed], name=f"{old}__unet_tf_squeeze"))
    output.name = squeezed
    del output.type.tensor_type.shape.dim[:extra]
    return extra


def name_and_label_io(graph) -> None:
    """Rename ``graph``'s first output :data:`OUTPUT_NAME` and label the first three
    dimensions of its first input and output :data:`DIM_LABELS` (batch, y, x: dynamic)."""
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if n == old else n for n in node.output]
        node.input[:] = [OUTPUT_NAME if n == old else n for n in node.input]
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        for dim, label in zip(value.type.tensor_type.shape.dim, DIM_LABELS):
            dim.dim_param = label
