"""Readers return the file's true dtype and values; writers round-trip atomically."""
import cv2
import numpy as np
import pytest
import tifffile

from unet_tf.errors import UserInputError
from unet_tf.io import read_image, read_label, write_mask, write_tiff


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_true_dtype_and_values(tmp_path, rng, dtype):
    if dtype == np.float32:
        array = rng.normal(size=(37, 53)).astype(dtype)
    else:
        array = rng.integers(0, np.iinfo(dtype).max, size=(37, 53), endpoint=True).astype(dtype)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, array)
    out = read_image(path)
    assert out.dtype == dtype and out.shape == (37, 53)
    np.testing.assert_array_equal(out, array)


def test_16bit_png_and_8bit_jpeg(tmp_path, rng):
    array = rng.integers(0, 65535, size=(20, 30)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), array)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, array)
    flat = np.full((16, 16), 77, np.uint8)
    cv2.imwrite(str(tmp_path / "b.jpg"), flat)
    out = read_image(tmp_path / "b.jpg")
    assert out.dtype == np.uint8 and out.shape == (16, 16) and abs(int(out.mean()) - 77) <= 1


def test_gray_alpha_png_keeps_gray_band(tmp_path, rng):
    from PIL import Image  # OpenCV cannot write 2-channel PNGs; Pillow comes with matplotlib

    gray = rng.integers(0, 255, size=(10, 12)).astype(np.uint8)
    alpha = np.full_like(gray, 128)
    Image.fromarray(np.dstack([gray, alpha]), mode="LA").save(tmp_path / "ga.png")
    out = read_image(tmp_path / "ga.png")
    np.testing.assert_array_equal(out, gray)


def test_rgb_reduced_to_luminance(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[..., 1] = 100  # green
    rgb[..., 2] = 50  # blue
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])  # OpenCV wants BGR
    out = read_image(tmp_path / "rgb.png")
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert out.dtype == np.uint8 and out.shape == (4, 5)
    assert np.all(out == expected)
    # The same through a 3-band TIFF (rasterio, RGB band order).
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert np.all(read_image(tmp_path / "rgb.tif") == expected)


def test_gray_saved_as_rgb_comes_back_exactly(tmp_path, rng):
    gray = rng.integers(0, 65535, size=(8, 9)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", np.dstack([gray] * 3), photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif"), gray)


def test_multipage_tiff_is_refused(tmp_path):
    stack = np.zeros((3, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack", metadata=None)
    with pytest.raises(UserInputError, match=r"stack\.tif.*multi-page"):
        read_image(tmp_path / "stack.tif")


@pytest.mark.parametrize("name,content", [("bad.tif", b"not a tiff"), ("bad.png", b"\x89PNG junk")])
def test_unreadable_file_names_the_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserInputError, match=name):
        read_image(tmp_path / name)


def test_missing_and_unknown_suffix(tmp_path):
    with pytest.raises(UserInputError, match="no such file"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UserInputError, match="unknown image type"):
        read_image(tmp_path / "a.txt")


def test_read_label_rejects_fractional_float(tmp_path):
    tifffile.imwrite(tmp_path / "l.tif", np.array([[0, 1.5]], np.float32))
    with pytest.raises(UserInputError, match="non-integer"):
        read_label(tmp_path / "l.tif")
    tifffile.imwrite(tmp_path / "m.tif", np.array([[0, 2.0]], np.float32))
    assert read_label(tmp_path / "m.tif").tolist() == [[0, 2]]


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_write_mask_round_trip_and_dtype(tmp_path, suffix):
    small = np.array([[0, 50], [100, 200]])
    write_mask(tmp_path / f"m8{suffix}", small)
    out = read_image(tmp_path / f"m8{suffix}")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, small)
    big = np.array([[0, 1000], [65535, 3]])
    write_mask(tmp_path / f"m16{suffix}", big)
    out = read_image(tmp_path / f"m16{suffix}")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, big)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"m8{suffix}", f"m16{suffix}"])


def test_writers_leave_nothing_on_failure(tmp_path):
    with pytest.raises(UserInputError):
        write_mask(tmp_path / "m.jpg", np.zeros((2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_write_tiff_float_bands(tmp_path, rng):
    prob = rng.random((3, 6, 7)).astype(np.float32)
    write_tiff(tmp_path / "p.tif", prob)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "p.tif"), prob)


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_mask(tmp_path / "m.tif", np.zeros((2, 2), np.uint8))
        assert (tmp_path / "m.tif").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    finally:
        os.umask(mask)
