"""The model file's ModelInfo: round trip, older formats, the minimum object size it carries."""

import numpy as np
import pytest

from unet_tf.config import ModelConfig, PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.models.file import FORMAT_VERSION, ModelInfo

FORMAT_2 = {  # a ModelInfo dict as unet_tf wrote it before min_size (format 2)
    "class_values": [0, 1, 2],
    "class_names": ["background", "interior", "boundary"],
    "normalize": {"pmin": 1.0, "pmax": 99.8, "clip": False},
    "patch_size": 256,
    "size_divisor": 4,
    "dataset": "ctc",
    "label_mode": "values",
    "target": "instances",
    "boundary_width": 2,
    "ignore_value": None,
    "data_dir": None,
    "test_images": [],
    "model": {"base_filters": 4, "depth": 2},
    "unet_tf_version": "0.2.0",
    "format": 2,
}


def test_round_trip_keeps_min_size():
    info = ModelInfo((0, 1, 2), ("background", "interior", "boundary"), target="instances", min_size=541)
    back = ModelInfo.from_dict(info.to_dict())
    assert back == info and back.min_size == 541 and back.format == FORMAT_VERSION == 5


def test_round_trip_keeps_the_object_scale_and_older_formats_have_none():
    info = ModelInfo((0, 1), ("background", "cell"), object_diameter=23.5, pixel_size_um=0.24)
    back = ModelInfo.from_dict(info.to_dict())
    assert back == info and (back.object_diameter, back.pixel_size_um) == (23.5, 0.24)
    for version in (1, 2, 3):
        old = ModelInfo.from_dict({**FORMAT_2, "format": version})
        assert old.object_diameter is None and old.pixel_size_um is None and old.format == FORMAT_VERSION
    for name in ("object_diameter", "pixel_size_um"):
        for bad in (0.0, -2.0, float("nan")):
            with pytest.raises(ValueError, match=name):
                ModelInfo((0, 1), ("a", "b"), **{name: bad})


def test_round_trip_keeps_the_foreground_threshold_and_older_formats_have_none():
    info = ModelInfo((0, 1, 2), ("background", "interior", "boundary"), target="instances", foreground_threshold=0.85)
    assert ModelInfo.from_dict(info.to_dict()).foreground_threshold == 0.85
    for version in (1, 2, 3, 4):
        assert ModelInfo.from_dict({**FORMAT_2, "format": version}).foreground_threshold is None
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="foreground_threshold"):
            ModelInfo((0, 1), ("a", "b"), foreground_threshold=bad)


def test_replace_info_rewrites_only_the_info(tmp_path):
    """The file's ModelInfo changes; its weights, and so its output, do not."""
    import numpy as np
    from _helpers import tiny_model_file

    from unet_tf.models.file import load_model_and_info, replace_info

    path = tiny_model_file(tmp_path / "best.keras", 3)[0]
    before, info = load_model_and_info(path)
    assert replace_info(path, min_size=7) == ModelInfo.from_dict({**info.to_dict(), "min_size": 7})
    after, info_after = load_model_and_info(path)
    x = np.random.default_rng(0).random((1, 32, 32, 1), np.float32)
    np.testing.assert_array_equal(np.asarray(before(x)), np.asarray(after(x)))
    assert info_after.min_size == 7 and sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]


def test_format_2_dict_loads_without_min_size():
    info = ModelInfo.from_dict(FORMAT_2)
    assert info.min_size is None and info.format == FORMAT_VERSION and info.target == "instances"
    with pytest.raises(UserInputError, match="newer"):
        ModelInfo.from_dict({**FORMAT_2, "format": FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="min_size"):
        ModelInfo((0, 1), ("a", "b"), min_size=-1)


def test_format_2_keras_file_loads(tmp_path):
    """A best.keras whose info layer holds a format-2 dict (no min_size) loads, and predicts with min size 0."""
    import keras

    from unet_tf.models import build_model
    from unet_tf.models.file import load_model_and_info, min_size_for
    from unet_tf.models.info_layer import InfoLayer

    keras.utils.set_random_seed(0)
    network = build_model(ModelConfig(base_filters=4, depth=2), 3)
    keras.Model(network.input, InfoLayer(FORMAT_2)(network.output)).save(tmp_path / "old.keras")
    _, info = load_model_and_info(tmp_path / "old.keras")
    assert info.min_size is None and info.model.base_filters == 4
    assert min_size_for(PredictConfig(), info)[0] == 0


class FakeInstanceModel:
    """Callable on batches like an ONNX model: interior where the normalized input > 0.75, boundary above 0.25."""

    def __init__(self, min_size):
        self.info = ModelInfo.from_dict({**FORMAT_2, "min_size": min_size, "format": 3})

    def __call__(self, batch):
        x = batch[..., 0]
        interior, boundary = x > 0.75, (x > 0.25) & (x <= 0.75)
        return np.stack([~(interior | boundary), interior, boundary], -1).astype(np.float32)


def test_predict_image_uses_the_model_min_size_unless_one_is_given():
    from unet_tf.models.file import min_size_for
    from unet_tf.prediction.image import predict_image

    image = np.zeros((64, 64), np.float32)
    image[5:25, 5:25] = 1.0  # 400 px object (interior with a rim of boundary)
    image[4:26, 4:26][image[4:26, 4:26] == 0] = 0.5
    image[40:46, 40:46] = 1.0  # 36 px object
    model = FakeInstanceModel(min_size=100)
    assert predict_image(model, image, tile=64, overlap=0).instances.max() == 1  # the small one dropped
    assert predict_image(model, image, tile=64, overlap=0, min_size=0).instances.max() == 2  # explicit wins
    assert min_size_for(PredictConfig(min_size=7), model.info) == (7, "set")
    assert min_size_for(PredictConfig(), model.info)[0] == 100
    with pytest.raises(UserInputError, match="min size"):
        PredictConfig(min_size=-1)
