"""Readers return the file's true dtype and values; writers round-trip atomically."""

import cv2
import numpy as np
import pytest
import tifffile

from unet_tf.errors import UserInputError, note_run
from unet_tf.io.images import read_image, read_label
from unet_tf.io.writers import write_mask, write_tiff


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


# --- stacks (issue 15) --------------------------------------------------------

from unet_tf.io.images import iter_pages, page_count, read_page  # noqa: E402
from unet_tf.io.metadata import pixel_size_um  # noqa: E402
from unet_tf.io.writers import StackWriter  # noqa: E402


def test_16bit_stack_round_trips_page_by_page(tmp_path, rng):
    pages = rng.integers(0, 65535, size=(5, 19, 23), endpoint=True).astype(np.uint16)
    path = tmp_path / "stack.tif"
    with StackWriter(path, n_pages=5, dtype=np.uint16) as writer:
        for page in pages:
            writer.append(page)
    assert page_count(path) == 5
    out = list(iter_pages(path))
    assert len(out) == 5 and all(p.dtype == np.uint16 for p in out)
    np.testing.assert_array_equal(np.stack(out), pages)
    np.testing.assert_array_equal(read_page(path, 3), pages[3])
    np.testing.assert_array_equal(tifffile.imread(path), pages)  # other readers see 5 pages too
    with pytest.raises(UserInputError, match=r"stack\.tif.*5 pages.*iter_pages"):
        read_image(path)
    with pytest.raises(ValueError, match="index=5"):
        read_page(path, 5)


@pytest.mark.parametrize("second", [np.zeros((8, 9), np.uint8), np.zeros((8, 8), np.uint16)])
def test_pages_of_different_size_or_dtype_name_the_page(tmp_path, second):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((8, 8), np.uint8), metadata=None)
        tif.write(np.zeros((8, 8), np.uint8), metadata=None)
        tif.write(second, metadata=None)
    for call in (page_count, lambda p: next(iter_pages(p)), lambda p: read_page(p, 0)):
        with pytest.raises(UserInputError, match=r"mixed\.tif: page 3 of 3 is 8x\d \w+, page 1 is 8x8 uint8"):
            call(path)


def test_ome_hyperstack_flattens_in_file_order_and_says_so(tmp_path, capsys):
    planes = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)  # C, Z, Y, X
    path = tmp_path / "h.ome.tif"
    tifffile.imwrite(path, planes, ome=True, metadata={"axes": "CZYX"})
    assert page_count(path) == 6
    with note_run():
        np.testing.assert_array_equal(np.stack(list(iter_pages(path))), planes.reshape(6, 4, 5))
    assert "h.ome.tif (CZYX: C=2, Z=3)" in capsys.readouterr().err


def test_imagej_hyperstack_and_rgb_pages(tmp_path, capsys):
    planes = np.arange(2 * 2 * 3 * 4, dtype=np.uint16).reshape(2, 2, 3, 4)  # Z, C, Y, X
    tifffile.imwrite(tmp_path / "ij.tif", planes, imagej=True, metadata={"axes": "ZCYX"})
    with note_run():
        np.testing.assert_array_equal(np.stack(list(iter_pages(tmp_path / "ij.tif"))), planes.reshape(4, 3, 4))
    assert "flattened" in capsys.readouterr().err
    rgb = np.zeros((2, 4, 5, 3), np.uint8)
    rgb[..., 0], rgb[1, ..., 1] = 200, 100
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    out = list(iter_pages(tmp_path / "rgb.tif"))
    assert [int(p[0, 0]) for p in out] == [round(0.299 * 200), round(0.299 * 200 + 0.587 * 100)]


def test_reduced_resolution_pages_are_skipped(tmp_path):
    path = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.full((16, 16), 7, np.uint8), metadata=None)
        tif.write(np.full((8, 8), 9, np.uint8), subfiletype=1, metadata=None)  # a thumbnail
    assert page_count(path) == 1
    assert read_image(path).shape == (16, 16)


def test_single_image_files_are_one_page(tmp_path, rng):
    array = rng.integers(0, 255, size=(6, 7)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), array)
    assert page_count(tmp_path / "a.png") == 1
    np.testing.assert_array_equal(next(iter_pages(tmp_path / "a.png")), array)
    np.testing.assert_array_equal(read_page(tmp_path / "a.png", 0), array)
    with pytest.raises(UserInputError, match="no such file"):
        page_count(tmp_path / "nope.tif")


@pytest.mark.parametrize("size", [0.37, 0.004, 12.5])
def test_written_tiffs_carry_the_pixel_size(tmp_path, size):
    write_mask(tmp_path / "m.tif", np.array([[0, 1], [2, 3]]), pixel_size_um=size)
    write_tiff(tmp_path / "p.tif", np.zeros((2, 3, 4), np.float32), pixel_size_um=size)
    for name in ("m.tif", "p.tif"):
        value, source = pixel_size_um(tmp_path / name)
        assert value == pytest.approx(size, rel=1e-6), source
    np.testing.assert_array_equal(read_image(tmp_path / "m.tif"), [[0, 1], [2, 3]])
    assert page_count(tmp_path / "p.tif") == 2  # (bands, H, W): bands are pages
    with pytest.raises(ValueError, match="pixel_size_um"):
        write_mask(tmp_path / "bad.tif", np.zeros((2, 2)), pixel_size_um=-1.0)
    assert not (tmp_path / "bad.tif").exists()


@pytest.mark.parametrize("kwargs", [{"imagej": True}, {"ome": True}, {}])
def test_stack_axes_and_planes_in_the_axes_c_order(tmp_path, kwargs):
    from unet_tf.io.images import iter_stack_planes, stack_axes

    planes = np.arange(3 * 2 * 4 * 5, dtype=np.uint16).reshape(3, 2, 4, 5)  # T, C, Y, X
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, planes, metadata={"axes": "TCYX"}, **kwargs)
    assert stack_axes(path) == ("TC", (3, 2))
    np.testing.assert_array_equal(np.stack(list(iter_stack_planes(path, [1, 3, 5]))), planes[:, 1])
    tifffile.imwrite(tmp_path / "plain.tif", planes.reshape(6, 4, 5), metadata=None)
    assert stack_axes(tmp_path / "plain.tif") == ("I", (6,))
    tifffile.imwrite(tmp_path / "one.tif", planes[0, 0])
    assert stack_axes(tmp_path / "one.tif") == ("", ())


def test_colour_note_is_said_once_per_run_with_the_file_count(tmp_path, rng, capsys):
    """Five colour PNGs read in one command: one note naming the first file, one summary with the count 5.
    (It used to be said once per file, as the message held the path.) A second run says it again."""
    from unet_tf.cli.common import run_main

    paths = [tmp_path / f"c{i}.png" for i in range(5)]
    for path in paths:
        cv2.imwrite(str(path), rng.integers(0, 255, size=(4, 5, 3)).astype(np.uint8))
    for _ in range(2):
        assert run_main(lambda: len([read_image(p) for p in paths]) - 5) == 0
        err = capsys.readouterr().err.splitlines()
        kind = "note: colour images are reduced to gray (luminance; alpha ignored)"
        assert err == [f"{kind}, e.g. {paths[0]}", f"{kind}: 5 files, e.g. {paths[0]}"]
