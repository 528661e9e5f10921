"""Model builders: shapes, output activations, names, parameter counts, save/load."""

import inspect
from dataclasses import replace

import keras
import numpy as np
import pytest

from unet_tf.config import ModelConfig
from unet_tf.errors import UserInputError
from unet_tf.models import build_model, build_resunet, build_unet, check_input_size, resolved_depth

RNG = np.random.default_rng(0)


def _image(h, w, batch=2):
    return RNG.random((batch, h, w, 1), dtype=np.float32)


def _tiny(builder, **kwargs):
    """base 4 and depth 2 (U-Net) or 3 (ResUNet) unless given; seeded weights."""
    keras.utils.set_random_seed(0)
    kwargs.setdefault("base_filters", 4)
    kwargs.setdefault("depth", 2 if builder is build_unet else 3)
    return builder(**kwargs)


BUILDERS = [build_unet, build_resunet]


@pytest.mark.parametrize("builder", BUILDERS)
def test_binary_gives_one_sigmoid_channel_of_input_size(builder):
    model = _tiny(builder, n_classes=2)
    y = np.asarray(model(_image(64, 96), training=False))
    assert y.shape == (2, 64, 96, 1)
    assert y.dtype == np.float32
    assert np.all((y >= 0) & (y <= 1))  # float32 sigmoid may saturate to exactly 0 or 1
    assert y.std() > 0  # not a constant map


@pytest.mark.parametrize("builder", BUILDERS)
def test_multiclass_gives_softmax_channels(builder):
    model = _tiny(builder, n_classes=5)
    y = np.asarray(model(_image(64, 96), training=False))
    assert y.shape == (2, 64, 96, 5)
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("upsampling", ["nearest", "bilinear", "transpose"])
@pytest.mark.parametrize("builder", BUILDERS)
def test_upsampling_modes_build_and_run(builder, upsampling):
    model = _tiny(builder, upsampling=upsampling)
    up = model.get_layer("dec1_up")
    if upsampling == "transpose":
        assert isinstance(up, keras.layers.Conv2DTranspose)
    else:
        assert isinstance(up, keras.layers.UpSampling2D)
        assert up.interpolation == upsampling
    assert model(_image(32, 64, batch=1)).shape == (1, 32, 64, 1)


@pytest.mark.parametrize("builder", BUILDERS)
def test_attention_handles_two_sizes_trains_and_round_trips(builder, tmp_path):
    model = _tiny(builder, n_classes=3, attention=True, dropout=0.2)
    assert any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in model.layers)
    assert model(_image(32, 32)).shape == (2, 32, 32, 3)
    assert model(_image(64, 96)).shape == (2, 64, 96, 3)

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    labels = RNG.integers(0, 3, size=(2, 32, 32))
    loss = model.train_on_batch(_image(32, 32), labels)
    assert np.isfinite(loss)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _image(64, 96)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(loaded(x, training=False)))


@pytest.mark.parametrize("builder", BUILDERS)
def test_builder_defaults_are_the_model_config_defaults(builder):
    defaults = {k: v.default for k, v in inspect.signature(builder).parameters.items()}
    cfg = ModelConfig()
    assert (defaults["base_filters"], defaults["upsampling"]) == (cfg.base_filters, cfg.upsampling)
    assert (defaults["dropout"], defaults["attention"]) == (cfg.dropout, cfg.attention)
    assert defaults["depth"] == resolved_depth(replace(cfg, model="unet" if builder is build_unet else "resunet"))


def test_check_input_size():
    with pytest.raises(UserInputError, match=r"patch size 250 is not divisible by 2\*\*4 = 16.*use e.g. 256"):
        check_input_size(250, 4)
    with pytest.raises(UserInputError, match="tile 100"):
        check_input_size(100, 3, what="tile")
    check_input_size(256, 4)
    check_input_size(96, 5)


@pytest.mark.parametrize("builder", BUILDERS)
def test_layer_names_are_unique_and_informative(builder):
    model = _tiny(builder)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    middle = "bottleneck" if builder is build_unet else "bridge"
    for expected in [
        "image",
        "enc1_conv1",
        "enc2_conv1",
        f"{middle}_conv1",
        "dec1_up",
        "dec1_concat",
        "head_conv",
        "probabilities",
    ]:
        assert expected in names


def _conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def _bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def _double_conv(c_in, c_out):
    return _conv(3, c_in, c_out, bias=False) + _bn(c_out) + _conv(3, c_out, c_out, bias=False) + _bn(c_out)


def test_unet_parameter_count_matches_the_architecture():
    # base 4, depth 2: encoder 4, 8; bottleneck 16; decoder 8, 4; head 4 -> 1.
    expected = (
        _double_conv(1, 4)  # enc1: 36 + 16 + 144 + 16
        + _double_conv(4, 8)  # enc2
        + _double_conv(8, 16)  # bottleneck
        + _conv(2, 16, 8)
        + _double_conv(16, 8)  # dec2: up-conv, concat 8 + 8
        + _conv(2, 8, 4)
        + _double_conv(8, 4)  # dec1: up-conv, concat 4 + 4
        + _conv(1, 4, 1)  # head
    )
    assert expected == 7637
    assert build_unet(base_filters=4, depth=2).count_params() == expected
    # A 2x2 transposed convolution has the same count as the 2x2 up-conv.
    assert build_unet(base_filters=4, depth=2, upsampling="transpose").count_params() == expected
    # Five classes: head 4 -> 5.
    assert build_unet(n_classes=5, base_filters=4, depth=2).count_params() == expected - 5 + 25


def test_resunet_depth3_downsamples_three_times():
    model = build_resunet(base_filters=4, depth=3)
    features = keras.Model(
        model.input, [model.get_layer(n).output for n in ["enc1_add", "enc2_add", "enc3_add", "bridge_add"]]
    )
    shapes = [tuple(f.shape) for f in features(_image(64, 64, batch=1))]
    assert shapes == [(1, 64, 64, 4), (1, 32, 32, 8), (1, 16, 16, 16), (1, 8, 8, 32)]


def test_build_model_dispatches_and_rejects_bad_settings():
    model = build_model(ModelConfig(model="resunet", base_filters=4, depth=2), n_classes=2)
    assert model.name == "resunet"
    assert model.get_layer("bridge_add").output.shape[-1] == 16
    model = build_model(ModelConfig(model="unet", base_filters=4, depth=2), n_classes=4)
    assert model.name == "unet"
    assert model.output.shape[-1] == 4
    with pytest.raises(UserInputError, match="model 'vnet'"):
        build_model(ModelConfig(model="vnet"), n_classes=2)
    with pytest.raises(UserInputError, match="upsampling"):
        build_model(ModelConfig(upsampling="cubic"), n_classes=2)
    with pytest.raises(UserInputError, match="at least 2 classes"):
        build_model(ModelConfig(), n_classes=1)


def test_output_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_unet(base_filters=4, depth=2)
        assert model.get_layer("enc1_conv1").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
