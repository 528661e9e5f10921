"""OME-Zarr in and out: lazy windows equal whole reads, pixel sizes, ome-zarr-py reads what we write back."""

import io

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image

from unet_tf.errors import UserInputError, note_run
from unet_tf.io.zarr import is_zarr, open_image

FORMATS = {"v2": FormatV04(), "v3": FormatV05()}


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 4000, size=(300, 200)).astype(np.uint16)


def ome_zarr_by_ome_zarr_py(path, data, axes, fmt, unit="nanometer", size=250.0):
    """An OME-Zarr written by ome-zarr-py (the independent writer): 3 levels, chunks of 64 on y/x."""
    group = zarr.open_group(path, mode="w", zarr_format=fmt.zarr_format)
    chunks = tuple(64 if a in "yx" else 1 for a in axes)
    write_image(
        data,
        group,
        fmt=fmt,
        axes=axes,
        axes_units={"y": unit, "x": unit},
        scale={a: (size if a in "yx" else 1.0) for a in axes},
        scale_factors=[2, 4],
        storage_options={"chunks": chunks},
    )
    return path


def noted(fn, *args):
    """(result, notes printed) of fn(*args) in a fresh note run."""
    stream = io.StringIO()
    with note_run(stream):
        result = fn(*args)
    return result, stream.getvalue()


@pytest.mark.parametrize("store", ["v2", "v3"])
def test_open_ome_zarr_window_and_pixel_size_in_nm(tmp_path, image, store):
    path = ome_zarr_by_ome_zarr_py(tmp_path / "a.ome.zarr", image[None, None], "tcyx", FORMATS[store])
    assert is_zarr(path) and is_zarr(tmp_path / "missing.zarr") and not is_zarr(tmp_path)
    with open_image(path) as img:
        assert (img.kind, img.shape, img.dtype, img.chunks) == ("ome-zarr", (300, 200), np.uint16, (64, 64))
        assert img.pixel_size_um == pytest.approx(0.25)  # 250 nanometer
        window = img.array[37:201, 5:190]
        assert isinstance(window, np.ndarray)
        np.testing.assert_array_equal(window, image[37:201, 5:190])
        np.testing.assert_array_equal(np.asarray(img.array), image)


def test_ome_zarr_millimeter_and_unknown_unit(tmp_path, image):
    path = ome_zarr_by_ome_zarr_py(tmp_path / "mm.ome.zarr", image, "yx", FormatV04(), unit="millimeter", size=0.002)
    assert open_image(path).pixel_size_um == pytest.approx(2.0)
    path = ome_zarr_by_ome_zarr_py(tmp_path / "px.ome.zarr", image, "yx", FormatV04(), unit="parsec", size=3.0)
    img, notes = noted(open_image, path)
    assert img.pixel_size_um is None and "unit 'parsec' is not a length unit" in notes


def test_non_singleton_channel_refused_in_one_line(tmp_path, image):
    path = ome_zarr_by_ome_zarr_py(tmp_path / "c2.ome.zarr", np.stack([image, image]), "cyx", FormatV04())
    with pytest.raises(UserInputError) as info:
        open_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "c=2" in message and "one gray plane" in message


@pytest.mark.parametrize("store", [2, 3])
def test_plain_zarr_array_and_group_said_in_a_note(tmp_path, image, store):
    array = zarr.create_array(
        tmp_path / "plain.zarr", shape=image.shape, dtype=image.dtype, chunks=(50, 80), zarr_format=store
    )
    array[:] = image
    img, notes = noted(open_image, tmp_path / "plain.zarr")
    assert (img.kind, img.chunks, img.pixel_size_um) == ("zarr", (50, 80), None)
    np.testing.assert_array_equal(img.array[49:151, 79:81], image[49:151, 79:81])
    assert "no multiscale metadata: read the array" in notes

    group = zarr.open_group(tmp_path / "group.zarr", mode="w", zarr_format=store)
    group.create_array("raw", shape=image.shape, dtype=image.dtype)[:] = image
    img, notes = noted(open_image, tmp_path / "group.zarr")
    np.testing.assert_array_equal(img.array[:, :], image)
    assert "read the array" in notes and "raw" in notes
    group.create_array("other", shape=(4, 5), dtype="uint8")
    with pytest.raises(UserInputError, match=r"several 2-D arrays \(other, raw\)"):
        open_image(tmp_path / "group.zarr")


@pytest.mark.parametrize("layout", [{"tile": (64, 64)}, {"rowsperstrip": 16}, {"tile": (32, 48), "bigtiff": True}])
def test_tiff_zarr_view_equals_tifffile_read(tmp_path, image, layout):
    path = tmp_path / "a.tif"
    tifffile.imwrite(
        path,
        image,
        resolution=(2.0, 2.0),
        resolutionunit=1,
        metadata=None,
        description="ImageJ=1.11a\nunit=micron\n",
        **layout,
    )
    whole = tifffile.imread(path)
    with open_image(path) as img:
        assert img.kind == "tiff" and img.shape == (300, 200) and img.pixel_size_um == pytest.approx(0.5)
        np.testing.assert_array_equal(img.array[100:257, 3:150], whole[100:257, 3:150])
        assert img.chunks == (layout["tile"] if "tile" in layout else (16, 200))


def test_tiff_rgb_window_is_gray_and_stack_gives_page_0(tmp_path, image):
    rgb = np.stack([image % 256, (image // 3) % 256, (image // 7) % 256], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, tile=(64, 64), photometric="rgb")
    with open_image(tmp_path / "rgb.tif") as img:
        expected = np.rint(rgb[10:90, 20:60].astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
        np.testing.assert_array_equal(img.array[10:90, 20:60], expected)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([image, image + 1]))
    img, notes = noted(open_image, tmp_path / "stack.tif")
    np.testing.assert_array_equal(img.array[5:9, 7:8], image[5:9, 7:8])
    assert "first page only" in notes
    img.close()


def test_missing_and_unreadable_inputs(tmp_path):
    for path, words in [
        (tmp_path / "none.ome.zarr", "no such file"),
        (tmp_path / "bad.zarr", "cannot be opened as zarr"),
        (tmp_path / "a.png", "not an image this reader opens lazily"),
        (tmp_path / "b.tif", "not a readable TIFF"),
    ]:
        if path.name == "bad.zarr":
            path.mkdir()
            (path / ".zgroup").write_text("{not json")
        elif path.suffix in (".png", ".tif"):
            path.write_bytes(b"not an image")
        with pytest.raises(UserInputError, match=words) as info:
            open_image(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
