import numpy as np
import pytest

from unet_tf.data.normalize import ids_to_values, percentile_normalize, stretch, stretch_limits, values_to_ids
from unet_tf.errors import UserInputError


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


def test_sparse_image_with_equal_percentiles_maps_bright_pixels_to_unit_range():
    # 99 % zeros (396 of 400; 2nd and 98th percentiles both 0): hi falls back to the maximum, 200.
    x = np.zeros((20, 20), np.uint8)
    x.flat[[0, 5, 77, 399]] = [200, 50, 100, 150]
    assert np.percentile(x, 2) == np.percentile(x, 98) == 0
    y = percentile_normalize(x)
    expected = np.zeros((20, 20), np.float32)
    expected.flat[[0, 5, 77, 399]] = [1.0, 0.25, 0.5, 0.75]  # value / 200
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=0)


def test_mostly_saturated_image_uses_the_minimum_as_lo():
    x = np.full((10, 10), 255, np.uint8)  # 2nd and 98th percentiles and the max all 255
    x.flat[0] = 55
    y = percentile_normalize(x)
    assert y.flat[0] == 0 and np.all(y.flat[1:] == 1.0)


def test_constant_image_maps_to_zeros():
    for value in (0, 7, 65535):
        y = percentile_normalize(np.full((8, 9), value, np.uint16))
        assert y.dtype == np.float32 and np.all(y == 0)
    y = percentile_normalize(np.full((2, 3, 3), 5.0), axis=(0, 1))  # per channel too
    assert np.all(y == 0)


def test_stretch_limits_hand_cases_and_stretch_never_divides_by_eps():
    lo, hi = stretch_limits(3.0, 9.0, 0.0, 10.0)  # normal: unchanged
    assert (float(lo), float(hi)) == (3.0, 9.0)
    lo, hi = stretch_limits(0.0, 0.0, 0.0, 10.0)  # flat bottom: hi -> max
    assert (float(lo), float(hi)) == (0.0, 10.0)
    lo, hi = stretch_limits(10.0, 10.0, 2.0, 10.0)  # flat top: lo -> min
    assert (float(lo), float(hi)) == (2.0, 10.0)
    lo, hi = stretch_limits(4.0, 4.0, 4.0, 4.0)  # constant
    assert float(lo) == float(hi) == 4.0
    np.testing.assert_array_equal(stretch(np.array([4.0, 5.0]), 4.0, 4.0), [0.0, 0.0])


def test_normal_image_is_stretched_by_its_percentiles_as_before():
    x = np.random.default_rng(3).normal(100, 20, size=(32, 32))
    lo, hi = np.percentile(x, [2, 98])
    expected = ((x - lo) / (hi - lo)).astype(np.float32)
    np.testing.assert_allclose(percentile_normalize(x), expected, rtol=1e-5, atol=1e-5)


def test_streamed_prediction_normalizes_a_sparse_image_as_the_whole_image_path(tmp_path):
    import tifffile

    from unet_tf.io.windows import WindowReader
    from unet_tf.prediction import streaming

    image = np.zeros((600, 40), np.uint16)
    image[100:103, 10:13] = 1000  # 10 of 24000 pixels bright: both percentiles 0
    image[300, 5] = 250
    tifffile.imwrite(tmp_path / "sparse.tif", image)
    with WindowReader(tmp_path / "sparse.tif") as reader:
        lo, hi, exact = streaming.image_percentiles(reader, (2.0, 98.0))
    assert exact and (lo, hi) == (0.0, 1000.0)
    streamed = streaming.normalize_rows(image, lo, hi)
    np.testing.assert_array_equal(streamed, percentile_normalize(image))
    assert streamed.max() == 1.0 and streamed[300, 5] == 0.25


def test_predict_image_normalizes_a_sparse_image_with_the_fallback(monkeypatch):
    """The whole-image path stretches with percentile_normalize's limits, fallback included:
    an identity network hands back the normalized image (not x / 1e-20)."""
    from unet_tf.models.file import ModelInfo
    from unet_tf.prediction import image as prediction

    image = np.zeros((64, 48), np.uint16)
    image[10:12, 10:12] = 800
    image[40, 5] = 200
    info = ModelInfo((0, 255), ("background", "foreground"), size_divisor=8)
    monkeypatch.setattr(prediction, "engine", lambda model: (lambda batch: np.asarray(batch, np.float32), info))
    result = prediction.predict_image(None, image, tile=32, overlap=8)
    np.testing.assert_allclose(result.probabilities[..., 0], percentile_normalize(image), atol=1e-6)
    assert result.probabilities.max() == pytest.approx(1.0) and result.probabilities[40, 5, 0] == pytest.approx(0.25)
