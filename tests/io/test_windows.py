"""Windowed reads equal slices of whole reads; streaming writers equal whole writes and are atomic."""

import cv2
import numpy as np
import pytest
import tifffile

from unet_tf.errors import UserInputError, note_run
from unet_tf.io.images import read_image
from unet_tf.io.metadata import pixel_size_um
from unet_tf.io.windows import WindowReader, image_dtype, image_shape, read_window
from unet_tf.io.writers import StackWriter, TiledTiffWriter, write_tiled


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 65535, size=(300, 170), endpoint=True).astype(np.uint16)


@pytest.mark.parametrize(
    "layout",
    [
        {"tile": (64, 64)},
        {"tile": (32, 48), "compression": "zlib"},
        {"rowsperstrip": 7},
        {"rowsperstrip": 16, "compression": "zlib", "predictor": True},
        {"rowsperstrip": 300, "compression": "zlib"},  # one compressed strip: still windowed below 64 MiB
    ],
)
def test_read_window_equals_slice_of_whole_read(tmp_path, image, layout):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, image, metadata=None, **layout)
    with WindowReader(path) as reader:
        assert reader.shape == (300, 170) and reader.dtype == np.uint16
        for row0, row1 in [(0, 1), (5, 71), (64, 128), (250, 300), (0, 300)]:
            np.testing.assert_array_equal(reader.read(row0, row1), image[row0:row1])
    np.testing.assert_array_equal(read_window(path, 33, 99), read_image(path)[33:99])
    with pytest.raises(ValueError, match="row0=10, row1=301"):
        read_window(path, 10, 301)


def test_giant_compressed_strip_falls_back_to_a_whole_read(tmp_path, image, capsys):
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, image, metadata=None, rowsperstrip=300, compression="zlib")
    with note_run(), WindowReader(path, max_block_bytes=1000) as reader:  # a run: said whatever ran before
        np.testing.assert_array_equal(reader.read(100, 140), image[100:140])
    assert "cannot be read in windows; reading it whole" in capsys.readouterr().err


def test_window_of_png_and_rgb_tiff(tmp_path, image):
    cv2.imwrite(str(tmp_path / "a.png"), image)
    np.testing.assert_array_equal(read_window(tmp_path / "a.png", 10, 20), image[10:20])
    rgb = np.dstack([image[:, :50].astype(np.uint8)] * 3)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", tile=(32, 32))
    np.testing.assert_array_equal(read_window(tmp_path / "rgb.tif", 40, 90), rgb[40:90, :, 0])


def test_window_of_a_stack_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(UserInputError, match=r"s\.tif.*multi-page"):
        WindowReader(tmp_path / "s.tif")


def test_header_shape_and_dtype(tmp_path, image):
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(32, 32))
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "b.png"), image[:20, :30].astype(np.uint8))
    cv2.imwrite(str(tmp_path / "c.jpg"), np.zeros((11, 13), np.uint8))
    assert (image_shape(tmp_path / "a.tif"), image_dtype(tmp_path / "a.tif")) == ((300, 170), np.uint16)
    assert (image_shape(tmp_path / "a.png"), image_dtype(tmp_path / "a.png")) == ((300, 170), np.uint16)
    assert (image_shape(tmp_path / "b.png"), image_dtype(tmp_path / "b.png")) == ((20, 30), np.uint8)
    assert (image_shape(tmp_path / "c.jpg"), image_dtype(tmp_path / "c.jpg")) == ((11, 13), np.uint8)


def _bands(array, heights):
    row = 0
    for height in heights:
        yield array[row : row + height]
        row += height


@pytest.mark.parametrize(
    "shape,heights",
    [
        ((300, 170), [37] * 8 + [4]),  # neither side a multiple of the tile; odd band heights
        ((256, 128), [64, 64, 128]),  # exact multiples
        ((10, 20), [10]),  # smaller than one tile
    ],
)
def test_band_wise_tiled_writer_equals_whole_array(tmp_path, shape, heights):
    array = np.random.default_rng(1).integers(0, 255, size=shape).astype(np.uint8)
    write_tiled(tmp_path / "pull.tif", _bands(array, heights), shape, np.uint8, tile=64, pixel_size_um=0.3)
    with TiledTiffWriter(tmp_path / "push.tif", shape, np.uint8, tile=64) as writer:
        for band in _bands(array, heights):
            writer.write_band(band)
    for name in ("pull.tif", "push.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.pages[0].is_tiled and tif.pages[0].tile == (64, 64)
        np.testing.assert_array_equal(read_image(tmp_path / name), array)
        np.testing.assert_array_equal(tifffile.imread(tmp_path / name), array)
    assert pixel_size_um(tmp_path / "pull.tif")[0] == pytest.approx(0.3)


def _failing_bands(array):
    yield array[:64]
    raise RuntimeError("model crashed")


def test_nothing_half_written_when_input_fails(tmp_path, image):
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous result")
    with pytest.raises(RuntimeError, match="model crashed"):
        write_tiled(out, _failing_bands(image), image.shape, np.uint16, tile=64)
    with pytest.raises(RuntimeError, match="model crashed"):
        with TiledTiffWriter(out, image.shape, np.uint16, tile=64) as writer:
            writer.write_band(image[:100])
            raise RuntimeError("model crashed")
    with pytest.raises(RuntimeError, match="model crashed"):
        with StackWriter(out, n_pages=3, dtype=np.uint16) as writer:
            writer.append(image)
            raise RuntimeError("model crashed")
    with pytest.raises(ValueError, match="100 rows, expected 300"):
        write_tiled(out, [image[:100]], image.shape, np.uint16, tile=64)
    with pytest.raises(ValueError, match="100 rows, expected 300"):
        with TiledTiffWriter(out, image.shape, np.uint16, tile=64) as writer:
            writer.write_band(image[:100])
    with pytest.raises(ValueError, match="2 pages appended, n_pages=3"):
        with StackWriter(out, n_pages=3, dtype=np.uint16) as writer:
            writer.append(image)
            writer.append(image)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_writers_refuse_bad_bands_and_pages(tmp_path, image):
    with pytest.raises(ValueError, match="goes past"):
        with TiledTiffWriter(tmp_path / "a.tif", (100, 170), np.uint16, tile=64) as writer:
            writer.write_band(image[:64])
            writer.write_band(image[:64])
    with pytest.raises(ValueError, match=r"page 2 has shape \(300, 169\)"):
        with StackWriter(tmp_path / "b.tif", n_pages=2, dtype=np.uint16) as writer:
            writer.append(image)
            writer.append(image[:, 1:])
    with pytest.raises(ValueError, match="page 1 holds values 0..300, outside uint8"):
        with StackWriter(tmp_path / "c.tif", n_pages=1, dtype=np.uint8) as writer:
            writer.append(np.array([[0, 300]]))
    with pytest.raises(ValueError, match="tile must be a positive multiple of 16"):
        write_tiled(tmp_path / "d.tif", [image], image.shape, np.uint16, tile=100)
    assert list(tmp_path.iterdir()) == []


def test_stack_writer_carries_pixel_size_and_big_stacks_use_bigtiff(tmp_path, image, monkeypatch):
    from unet_tf.io import writers as tiff_writers

    path = tmp_path / "s.tif"
    with StackWriter(path, n_pages=2, dtype=np.uint16, pixel_size_um=0.0125) as writer:
        writer.append(image)
        writer.append(image[::-1])
    assert pixel_size_um(path)[0] == pytest.approx(0.0125)
    monkeypatch.setattr(tiff_writers, "needs_bigtiff", lambda nbytes: nbytes >= 2 * image.nbytes)
    with StackWriter(path, n_pages=2, dtype=np.uint16) as writer:
        writer.append(image)
        writer.append(image[::-1])
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and len(tif.pages) == 2
    write_tiled(tmp_path / "t.tif", [image, image], (600, 170), np.uint16, tile=64)
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(read_image(tmp_path / "t.tif"), np.concatenate([image, image]))
