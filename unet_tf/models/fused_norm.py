"""BatchNormalization whose training pass runs TensorFlow's fused kernel.

Keras 3's BatchNormalization trains through separate moments, normalize and
scale ops; TF's ``FusedBatchNormV3`` does the same in one kernel with a fused
gradient, which makes a whole U-Net training step ~30 % faster on CPU
(BENCHMARKS.md, "Levers"). Inference, a frozen layer, masks and other
backends take the plain Keras path, so predictions, exports and weights are
those of ``keras.layers.BatchNormalization``; ``plain_batch_norm`` swaps the
class back for files that must load without unet_tf.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="unet_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with TF's fused kernel in training (same weights and config)."""

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32) if inputs.dtype == tf.float16 else inputs
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The kernel returns the Bessel-corrected variance; Keras keeps the biased one.
        n = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (n - 1.0) / tf.maximum(n, 2.0)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return tf.cast(y, self.compute_dtype)

    def _fusable(self, inputs, training, mask) -> bool:
        return (
            bool(training)
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.backend() == "tensorflow"
        )


def plain_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every FusedBatchNormalization as a plain BatchNormalization, same weights."""

    def clone(layer):
        if isinstance(layer, FusedBatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
