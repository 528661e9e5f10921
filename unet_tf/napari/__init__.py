"""The napari plugin: segment, correct, retrain (npe2; the manifest is ``napari.yaml`` beside this file).

- ``widgets.py``: the dock widgets *Segment* (:class:`~unet_tf.napari.widgets.SegmentWidget`) and *Correct and
  retrain* (:class:`~unet_tf.napari.widgets.RetrainWidget`), a thin magicgui / Qt layer.
- ``logic.py``: what they do, as plain functions without Qt (models, gray planes, segmenting through
  ``predict_image``, the training folder of corrected pairs).
- ``sample.py``: sample data, a synthetic TEM image with its objects and classes.
- ``writer.py``: Labels layers as uint16 TIFF with the pixel size, as ``predict.py`` writes them.
- ``worker.py`` and ``jobs.py``: the model process. napari's process never imports TensorFlow (its LLVM and
  that of Mesa's software OpenGL crash in one process); a child process loads the models and runs
  ``predict_image`` and the fine-tuning on the arrays the widgets send it.

The same loop from Python, without napari: :func:`unet_tf.training.corrections.finetune_on_corrections`.
Install with the ``napari`` extra (``pip install "unet_tf[napari]"``); importing this package (or its
widgets) imports neither napari nor TensorFlow.
"""
