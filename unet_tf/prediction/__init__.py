"""A trained model on new images, at full resolution, any size.

- ``tiling.py``: the tiling plan and blending window (pure functions).
- ``tiled.py``: the tile loop with test-time augmentation (one loop for in-memory and streamed images).
- ``image.py``: :func:`~unet_tf.prediction.image.predict_image`, THE prediction path on an array.
- ``files.py``: :func:`~unet_tf.prediction.files.predict_files` over files and folders: outputs, object tables,
  scores against ground truth.
- ``inputs.py``: what to segment: files, folders, globs, shards, output names.
- ``streaming.py``: one image file in row bands, memory O(tile x width).
- ``outputs.py``: the files of one predicted image (mask, instances, overlays, probabilities).
- ``onnx.py``: an exported ``model.onnx`` run with onnxruntime, no TensorFlow.
"""
