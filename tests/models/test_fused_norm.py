"""FusedBatchNormalization is BatchNormalization with a faster training kernel: same numbers, same files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet_tf.config import ModelConfig
from unet_tf.models import build_model
from unet_tf.models.fused_norm import FusedBatchNormalization, plain_batch_norm


def _pair(shape):
    plain = keras.layers.BatchNormalization(momentum=0.9)
    fused = FusedBatchNormalization(momentum=0.9)
    plain.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(1)
    fused.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in plain.get_weights()])
    plain.set_weights(fused.get_weights())
    return plain, fused


def test_training_step_matches_batch_normalization_outputs_statistics_and_gradients():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2, 3, (4, 8, 8, 5)).astype("float32"))
    r = tf.constant(rng.normal(size=(4, 8, 8, 5)).astype("float32"))
    plain, fused = _pair(x.shape)
    grads = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * r)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=2e-6)
    for p, f in zip(plain.get_weights(), fused.get_weights()):  # moving mean and (biased) variance
        np.testing.assert_allclose(f, p, rtol=1e-5, atol=1e-6)
    for gp, gf in zip(*grads):
        np.testing.assert_allclose(gf, gp, rtol=1e-4, atol=1e-5)


def test_frozen_layer_uses_moving_statistics_and_leaves_them_alone():
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype("float32")
    plain, fused = _pair(x.shape)
    fused.trainable = False
    before = [w.copy() for w in fused.get_weights()]
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=False), atol=1e-6)
    for b, a in zip(before, fused.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_models_use_it_save_it_and_export_plain_batch_normalization(tmp_path, name):
    model = build_model(ModelConfig(model=name, base_filters=4, depth=2), n_classes=3)
    assert any(isinstance(layer, FusedBatchNormalization) for layer in model.layers)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    plain = plain_batch_norm(model)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in plain.layers)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers) == sum(
        isinstance(layer, FusedBatchNormalization) for layer in model.layers
    )
    x = np.random.default_rng(3).random((1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(plain(x), model(x), atol=1e-6)
    assert plain.name == model.name
