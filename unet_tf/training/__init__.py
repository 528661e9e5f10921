"""One training run: a ``tf.data`` pipeline into ``model.fit``, a run folder out.

- ``run.py``: :func:`~unet_tf.training.run.train`, the run in named phases, returning a summary.
- ``fit.py``: the one fit entry point (one device, or a ``strategy.run`` loop under ``tf.distribute``).
- ``distribute.py``: TensorFlow strategies for several GPUs or machines.
- ``losses/``: weighted cross-entropy and overlap losses and their weighted sum; ``metrics.py``: the Keras metrics.
- ``callbacks.py``: checkpoints, early stopping, the learning-rate schedule and plateau, logs.
- ``finetune.py``: starting from a trained model's weights; ``precision.py``: float32 or mixed bfloat16.
- ``run_folder.py``: config.json, history.csv -> curves.png, summary.json.
"""
