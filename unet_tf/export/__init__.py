"""Take a trained model anywhere: ONNX, TensorFlow SavedModel, bioimage.io package.

Every export starts from the *bare network*: the Keras model without its
``unet_tf_info`` layer, i.e. plain Keras layers only (input float32
(B, H, W, 1) with H, W multiples of the size divisor, output (B, H, W, K)
probabilities, K = ``ModelInfo.n_outputs``: 1 for a two-class sigmoid head).
The model's :class:`~unet_tf.models.file.ModelInfo` travels with it
(:func:`load_for_export`).

- ONNX (:mod:`.onnx`) through Keras 3's ``model.export(format="onnx")``
  (tf2onnx on the TensorFlow backend), opset :data:`.onnx.ONNX_OPSET`
  (DeepImageJ reads <= 18), dynamic batch / height / width, input ``image``,
  output ``probabilities``, the model's info in ``metadata_props``
  (:mod:`unet_tf.prediction.onnx` reads it back). A leading unit axis that
  tf2onnx sometimes leaves on the output of a one-channel head,
  (1, B, H, W, 1), is squeezed in the graph.
- SavedModel (:mod:`.savedmodel`) through ``keras.export.ExportArchive``:
  endpoint ``serve`` returning ``{"probabilities": ...}`` (bioimage.io's TF
  loader wants a dict).
- bioimage.io model package, spec 0.5 (:mod:`.bioimageio`).

Each written file is checked against the Keras model on two image sizes
(:mod:`.checks`); a difference above :data:`.checks.ATOL` is an
:class:`ExportCheckError`. :func:`export_model` (:mod:`.run`) writes everything
into a temporary folder beside ``out`` and moves it into place only when all
formats have been written and checked: a failure leaves nothing behind. The
format names are :data:`unet_tf.config.EXPORT_FORMAT_NAMES`.
"""

from unet_tf.export.checks import ExportCheckError
from unet_tf.export.run import export_model, load_for_export, parse_formats

__all__ = ["ExportCheckError", "export_model", "load_for_export", "parse_formats"]
