"""The web app: a Streamlit page over the same functions as ``predict.py``.

``unet-tf-app`` (:mod:`unet_tf.cli.app`) starts it; :mod:`unet_tf.app.page` is
the Streamlit script and :mod:`unet_tf.app.logic` the Streamlit-free helpers
it calls (tested on their own). Importing this package loads neither
Streamlit nor TensorFlow.
"""

from pathlib import Path

PAGE = Path(__file__).with_name("page.py")  # the script ``streamlit run`` is given
