"""The files of one predicted input: dtypes of masks and instance labels."""

import numpy as np
import pytest
import tifffile

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo
from unet_tf.prediction.image import Prediction
from unet_tf.prediction.outputs import ImageOutputs, instance_dtype, write_outputs

INFO = ModelInfo((0, 255), ("background", "cell"), patch_size=64, size_divisor=4)
CONFIG = PredictConfig(overlay=False)


def _result(instances: np.ndarray) -> Prediction:
    ids = (instances > 0).astype(np.uint8)
    return Prediction(ids[..., None].astype(np.float32), ids, ids * np.uint8(255), instances.astype(np.int32))


def test_instance_dtype_is_uint16_up_to_65535_objects_then_uint32():
    assert [instance_dtype(n) for n in (0, 3, 255, 256, 65535, 65536, 2**32 - 1)] == [np.uint16] * 5 + [np.uint32] * 2
    with pytest.raises(ValueError, match="does not fit in uint32"):
        instance_dtype(2**32)


def test_instances_tif_is_uint16_with_few_objects_and_uint32_above_65535(tmp_path):
    few = np.zeros((20, 30), np.int32)
    few[2:5, 2:5], few[10:12, 20:25] = 1, 2  # 2 objects: fitted uint8 before, uint16 promised
    write_outputs(tmp_path, "few", np.zeros((20, 30), np.uint8), _result(few), INFO, CONFIG)
    got = tifffile.imread(tmp_path / "few_instances.tif")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, few)
    assert tifffile.imread(tmp_path / "few_mask.tif").dtype == np.uint8  # class masks keep their rule
    many = np.arange(1, 300 * 300 + 1, dtype=np.int32).reshape(300, 300)  # 90000 one-pixel objects
    write_outputs(tmp_path, "many", np.zeros((300, 300), np.uint8), _result(many), INFO, CONFIG)
    got = tifffile.imread(tmp_path / "many_instances.tif")
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, many)


def test_instance_stack_is_uint16_and_a_page_above_65535_objects_is_said(tmp_path):
    config = PredictConfig(overlay=False, split_touching=True)
    page = np.zeros((20, 30), np.int32)
    page[1:4, 1:4] = 1
    with ImageOutputs(tmp_path, "stack", 2, INFO, config) as outputs:
        outputs.add(0, np.zeros((20, 30), np.uint8), _result(page))
        outputs.add(1, np.zeros((20, 30), np.uint8), _result(page * 2))
    got = tifffile.imread(tmp_path / "stack_instances.tif")
    assert got.dtype == np.uint16 and got.shape == (2, 20, 30)
    np.testing.assert_array_equal(got[1], page * 2)
    many = np.arange(1, 300 * 300 + 1, dtype=np.int32).reshape(300, 300)
    with pytest.raises(UserInputError, match=r"big: page 1 has 90000 objects, more than the 65535"):
        with ImageOutputs(tmp_path, "big", 2, INFO, config) as outputs:
            outputs.add(0, np.zeros((300, 300), np.uint8), _result(many))
    assert not (tmp_path / "big_instances.tif").exists()
