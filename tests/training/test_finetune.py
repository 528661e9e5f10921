"""Fine-tuning: weights copied by name (BatchNorm statistics too), head swap, bad parents, frozen encoder."""

import json

import keras
import numpy as np
import pytest

from unet_tf.config import ModelConfig, RunConfig, replace_config
from unet_tf.errors import UserInputError
from unet_tf.models import build_model
from unet_tf.models.file import ModelInfo, attach_info
from unet_tf.training.finetune import FreezeEncoder, init_from, is_encoder_layer, parent_model_config
from unet_tf.training.losses import make_loss

TINY = ModelConfig(base_filters=4, depth=2)
CLASSES = {2: ((0, 255), ("background", "cell")), 5: ((0, 50, 100, 150, 200), tuple("abcde"))}


def tiny_model(n_classes: int, cfg: ModelConfig = TINY, seed: int = 0):
    keras.utils.set_random_seed(seed)
    values, names = CLASSES[n_classes]
    model = attach_info(build_model(cfg, n_classes), ModelInfo(values, names, patch_size=32, model=cfg))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=make_loss("auto", n_classes))
    return model


def batch(n_classes: int, seed: int = 0, size: int = 32):
    rng = np.random.default_rng(seed)
    x = rng.random((2, size, size, 1)).astype("float32")
    ids = (x[..., 0] * n_classes).astype("int64").clip(0, n_classes - 1)
    y = ids[..., None].astype("float32") if n_classes == 2 else np.eye(n_classes, dtype="float32")[ids]
    return x, y


@pytest.fixture(scope="module")
def parent5(tmp_path_factory):
    """A saved 5-class parent with random weights (moving statistics away from 0 / 1) and optimizer state."""
    model = tiny_model(5, seed=1)
    rng = np.random.default_rng(1)
    for v in model.weights:
        v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))  # positive: valid moving variances
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(3)
    path = tmp_path_factory.mktemp("parent") / "best.keras"
    model.save(path)
    return path, model


def weights_by_layer(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def test_parent_model_config_reads_the_architecture_and_refuses_foreign_files(parent5, tmp_path):
    cfg, info = parent_model_config(parent5[0])
    assert cfg == TINY and info.n_classes == 5
    with pytest.raises(UserInputError, match="no such weights file"):
        parent_model_config(tmp_path / "missing.keras")
    foreign = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(foreign)
    with pytest.raises(UserInputError, match="plain.keras: a Keras model, but not one written by unet_tf"):
        parent_model_config(foreign)


def test_same_classes_loss_at_step_zero_equals_the_parents_and_optimizer_is_fresh(parent5):
    path, parent = parent5
    child = tiny_model(5, seed=7)  # other fresh weights
    x, y = batch(5, seed=3)
    assert abs(child.evaluate(x, y, verbose=0) - parent.evaluate(x, y, verbose=0)) > 1e-3
    lines = []
    record = init_from(child, path, lines.append)
    assert abs(child.evaluate(x, y, verbose=0) - parent.evaluate(x, y, verbose=0)) < 1e-6
    ours, theirs = weights_by_layer(child), weights_by_layer(parent)
    bn = ours["enc1_bn1"]  # gamma, beta, moving mean, moving variance: all copied
    assert len(bn) == 4 and not np.allclose(theirs["enc1_bn1"][2], 0)
    for name, values in ours.items():
        for a, b in zip(values, theirs[name]):
            np.testing.assert_array_equal(a, b)
    assert record["head_replaced"] is False and record["copied_layers"] == len(ours)
    assert record["parent"] == str(path.resolve()) and record["parent_classes"] == list("abcde")
    assert int(child.optimizer.iterations.numpy()) == 0 and int(parent.optimizer.iterations.numpy()) == 3
    assert len(lines) == 1 and "replaced" not in lines[0]


def test_other_class_count_replaces_only_the_head(parent5):
    path, parent = parent5
    child = tiny_model(2, seed=7)
    fresh_head = [np.array(w) for w in child.get_layer("head_conv").get_weights()]
    lines = []
    record = init_from(child, path, lines.append)
    assert record["head_replaced"] is True
    assert [line for line in lines if "replaced the head" in line] == [lines[0]]
    assert lines[0].startswith("replaced the head: 5 classes -> 2")
    ours, theirs = weights_by_layer(child), weights_by_layer(parent)
    for a, b in zip(ours.pop("head_conv"), fresh_head):
        np.testing.assert_array_equal(a, b)
    assert record["copied_layers"] == len(ours)
    for name, values in ours.items():
        for a, b in zip(values, theirs[name]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (ModelConfig(base_filters=8, depth=2), "layer enc1_conv1 has kernel 3x3x1x4 in the parent, 3x3x1x8 here"),
        (ModelConfig(base_filters=4, depth=3), "layer enc3_conv1 is not in the parent"),
        (
            ModelConfig(base_filters=4, depth=1),
            "layer bottleneck_conv1 has kernel 3x3x8x16 in the parent, 3x3x4x8 here",
        ),
        (ModelConfig(model="resunet", base_filters=4, depth=2), "layer enc1_conv2 has 1 weights in the parent, 2 here"),
    ],
)
def test_incompatible_architecture_is_one_clear_error_and_copies_nothing(parent5, cfg, message):
    path, _ = parent5
    child = tiny_model(5, cfg, seed=7)
    before = weights_by_layer(child)
    with pytest.raises(UserInputError) as err:
        init_from(child, path, lambda line: None)
    text = str(err.value)
    assert text.startswith(f"{path}: incompatible architecture: ") and message in text and "\n" not in text
    for name, values in weights_by_layer(child).items():
        for a, b in zip(values, before[name]):
            np.testing.assert_array_equal(a, b)


def test_other_input_channels_is_an_error(parent5):
    inputs = keras.Input((None, None, 3), name="image")
    out = keras.layers.Conv2D(1, 1, name="head_conv")(inputs)
    child = attach_info(keras.Model(inputs, out), ModelInfo((0, 1), ("a", "b")))
    with pytest.raises(UserInputError, match="the parent takes 1 input channel\\(s\\), this model 3"):
        init_from(child, parent5[0], lambda line: None)


def test_encoder_layers_by_name():
    names = [layer.name for layer in build_model(TINY, 2).layers]
    encoder = [n for n in names if is_encoder_layer(n)]
    assert "enc1_conv1" in encoder and "enc2_pool" in encoder and "bottleneck_bn2" in encoder
    assert not any(n.startswith(("dec", "head", "image", "probabilities")) for n in encoder)
    resunet = [layer.name for layer in build_model(ModelConfig("resunet", 4, 2), 2).layers]
    assert {"enc1_shortcut", "enc2_conv1", "bridge_conv2"} <= {n for n in resunet if is_encoder_layer(n)}


class Snapshots(keras.callbacks.Callback):
    """Every variable of the model (BatchNorm statistics included) at the start and after each epoch."""

    def __init__(self):
        super().__init__()
        self.states = []

    def _take(self):
        self.states.append({v.path: np.array(v) for v in self.model.weights})

    def on_train_begin(self, logs=None):
        self._take()

    def on_epoch_end(self, epoch, logs=None):
        self._take()


def test_freeze_encoder_trains_only_the_decoder_then_everything():
    model = tiny_model(2)
    x, y = batch(2, seed=5)
    snaps = Snapshots()
    model.fit(x, y, epochs=2, batch_size=2, verbose=0, callbacks=[FreezeEncoder(1), snaps])
    start, frozen, free = snaps.states
    encoder = {v.path for layer in model.layers if is_encoder_layer(layer.name) for v in layer.weights}
    decoder = {v.path for layer in model.layers if layer.name.startswith(("dec", "head")) for v in layer.weights}
    assert encoder and decoder and len(encoder) + len(decoder) == len(start)
    assert any("moving_mean" in p for p in encoder)
    for p in encoder:  # frozen: no update, moving statistics fixed too
        np.testing.assert_array_equal(frozen[p], start[p], err_msg=p)
    assert all(not np.array_equal(free[p], frozen[p]) for p in encoder)
    assert all(not np.array_equal(frozen[p], start[p]) for p in decoder)
    assert all(not np.array_equal(free[p], frozen[p]) for p in decoder)
    assert all(layer.trainable for layer in model.layers)


@pytest.mark.slow  # a whole run: ~20 s alone, minutes on the loaded shared machine
def test_fine_tuning_run_through_the_training_phases(parent5, tmp_path, monkeypatch):
    """Until train.py wires --init-from: wrap compile_model, as the lead's call will."""
    from unet_tf.synthetic import write_tem_dataset
    from unet_tf.training import run as training

    write_tem_dataset(tmp_path / "tem", n_train=2, n_test=0, size=64, seed=0)
    records = []
    compile_model = training.compile_model

    def compile_and_init(cfg, info, spec, balance):
        model = compile_model(cfg, info, spec, balance)
        records.append(init_from(model, parent5[0], lambda line: None))
        return model

    monkeypatch.setattr(training, "compile_model", compile_and_init)
    cfg = replace_config(
        RunConfig(),
        data={
            "dataset": "tem",
            "data_dir": str(tmp_path / "tem"),
            "patch_size": 32,
            "patches_per_image": 2,
            "val_fraction": 0.5,
        },
        model={"base_filters": 4, "depth": 2},
        train={"epochs": 2, "steps_per_epoch": 1, "batch_size": 2, "out": str(tmp_path / "run")},
    )
    summary = training.train(cfg, verbose=0, extra_callbacks=[FreezeEncoder(1)])
    assert summary.epochs_run == 2 and records[0]["head_replaced"] is False
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["base_filters"] == 4


def test_freeze_encoder_refuses_a_distribution_strategy():
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = tiny_model(2)
    callback = FreezeEncoder(1)
    callback.set_model(model)
    with pytest.raises(UserInputError, match="`train.freeze_encoder_epochs`: works on one device only"):
        callback.on_train_begin()


def test_check_settings_refuses_freezing_without_a_parent_or_under_a_strategy():
    from dataclasses import dataclass

    from unet_tf.training.finetune import check_settings

    @dataclass
    class Train:  # the two TrainConfig fields the lead adds
        init_from: str | None = None
        freeze_encoder_epochs: int = 0

    check_settings(Train(), one_device=False)
    check_settings(Train("best.keras", 2), one_device=True)
    with pytest.raises(UserInputError, match="`train.freeze_encoder_epochs`: needs `train.init_from`"):
        check_settings(Train(None, 2), one_device=True)
    with pytest.raises(UserInputError, match=r"works on one device only, .* \(use `train.strategy` none\)"):
        check_settings(Train("best.keras", 2), one_device=False)
    with pytest.raises(UserInputError, match="`train.freeze_encoder_epochs` -1: must be at least 0"):
        check_settings(Train("best.keras", -1), one_device=True)


def _instance_parent(path, diameter):
    keras.utils.set_random_seed(0)
    info = ModelInfo(
        (0, 1, 2),
        ("background", "interior", "boundary"),
        patch_size=32,
        target="instances",
        object_diameter=diameter,
        model=TINY,
    )
    attach_info(build_model(TINY, 3), info).save(path)
    return str(path)


@pytest.mark.parametrize(
    "parent_diameter, own, child_target, expected",
    [
        (18.0, None, "instances", 18.0),
        (18.0, 25.0, "instances", 25.0),
        (18.0, None, "semantic", None),
        (None, None, "instances", None),
    ],
)
def test_fine_tuning_keeps_the_parents_object_scale(tmp_path, parent_diameter, own, child_target, expected):
    from unet_tf.data.layouts import DatasetSpec
    from unet_tf.training.finetune import with_parent_scale

    parent = _instance_parent(tmp_path / "parent.keras", parent_diameter)
    cfg = replace_config(RunConfig(), data={"object_diameter": own}, train={"init_from": parent})
    spec = DatasetSpec("folder", (0, 1, 2), ("background", "interior", "boundary"), target=child_target)
    lines = []
    assert with_parent_scale(cfg, spec, lines.append).data.object_diameter == expected
    assert bool(lines) == (expected is not None and own is None)
