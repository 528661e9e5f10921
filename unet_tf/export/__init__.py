"""Take a trained model anywhere: ONNX, TensorFlow SavedModel, bioimage.io package.

Every export starts from the *bare network*: the Keras model without its
``unet_tf_info`` layer, i.e. plain Keras layers only (input float32
(B, H, W, 1) with H, W multiples of the size divisor, output (B, H, W, K)
probabilities, K = 1 for a two-class sigmoid head).

- ONNX through Keras 3's ``model.export(format="onnx")`` (tf2onnx on the
  TensorFlow backend), opset :data:`ONNX_OPSET` (DeepImageJ reads <= 18),
  dynamic batch / height / width, input ``image``, output ``probabilities``,
  the model's info in ``metadata_props`` (:mod:`unet_tf.prediction.onnx`). A
  leading unit axis that tf2onnx sometimes leaves on the output of a one-channel
  head, (1, B, H, W, 1), is squeezed in the graph (:mod:`.onnx_graph`).
- SavedModel through ``keras.export.ExportArchive``: endpoint ``serve``
  returning ``{"probabilities": ...}`` (bioimage.io's TF loader wants a dict).
- bioimage.io model package (spec 0.5): :mod:`unet_tf.bioimageio`.

Each written file is checked against the Keras model on two image sizes; a
difference above :data:`ATOL` is an :class:`ExportCheckError`. Everything is
written into a temporary folder beside ``out`` and moved into place only when
all formats have been written and checked: a failure leaves nothing behind.
"""

from unet_tf.export.checks import ExportCheckError
from unet_tf.export.run import FORMATS, export_model, load_for_export, parse_formats

__all__ = ["FORMATS", "ExportCheckError", "export_model", "load_for_export", "parse_formats"]
