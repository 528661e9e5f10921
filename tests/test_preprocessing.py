import numpy as np
import pytest

from unet_tf.errors import UserInputError
from unet_tf.preprocessing import ids_to_values, percentile_normalize, values_to_ids


def test_percentiles_map_to_zero_and_one():
    x = np.random.default_rng(1).integers(0, 65535, size=(64, 64)).astype(np.uint16)
    y = percentile_normalize(x, 2, 98)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.percentile(y, 2) == pytest.approx(0, abs=1e-5)
    assert np.percentile(y, 98) == pytest.approx(1, abs=1e-5)
    y = percentile_normalize(x, 1, 99.8, clip=True)
    assert y.min() == 0 and y.max() == 1


def test_percentile_normalize_hand_case():
    x = np.arange(101, dtype=np.uint8)  # percentile p is p itself
    y = percentile_normalize(x, 10, 60)
    np.testing.assert_allclose(y[[10, 35, 60, 100]], [0, 0.5, 1, 1.8], atol=1e-6)


def test_values_to_ids_and_back():
    label = np.array([[255, 0], [0, 255]], np.uint8)
    ids = values_to_ids(label, (255, 0))  # isbi: class 0 = 255 (cell), class 1 = 0 (membrane)
    assert ids.dtype == np.uint8
    assert ids.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_array_equal(ids_to_values(ids, (255, 0)), label)
    tem = np.array([[0, 50, 100], [150, 200, 0]])
    assert values_to_ids(tem, (0, 50, 100, 150, 200)).tolist() == [[0, 1, 2], [3, 4, 0]]


def test_unknown_label_values_name_file_and_values():
    with pytest.raises(UserInputError, match=r"lab\.png: label values 7, 51 are not among"):
        values_to_ids(np.array([[0, 7, 51, 50]]), (0, 50), "lab.png")
