"""unet_tf: U-Net segmentation of microscopy images with Keras 3 / TensorFlow.

Importing the package registers its Keras objects (the model-info layer, the
losses and metrics), so ``keras.models.load_model("best.keras")`` works after
``import unet_tf`` alone.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from . import losses, metrics, model_file, models  # noqa: E402,F401  (register Keras objects)
