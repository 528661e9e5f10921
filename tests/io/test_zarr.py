"""OME-Zarr in and out: lazy windows equal whole reads, pixel sizes, ome-zarr-py reads what we write back."""

import io

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image

from unet_tf.errors import UserInputError, note_run
from unet_tf.io.zarr import create_output, finish_output, is_zarr, open_image, open_output, write_ome_zarr
from unet_tf.io.zarr._ngff import level_shapes, write_level

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


# === writer ===


def read_back(path):
    """{node name: (level arrays, coordinate transformations, metadata)} as ome-zarr-py's Reader sees ``path``."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = {}
    for node in Reader(parse_url(str(path), fmt=FormatV04()))():
        if node.data:
            levels = [np.asarray(level) for level in node.data]
            nodes[node.metadata["name"]] = (levels, node.metadata["coordinateTransformations"], node.metadata)
    return nodes


def hand_mean2(a):
    """2x2 means by explicit loops over the output pixels (the pixels present at an odd edge)."""
    h, w = a.shape[-2:]
    out = np.zeros(a.shape[:-2] + ((h + 1) // 2, (w + 1) // 2))
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = a[..., 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(-2, -1))
    return out


SHAPE = (301, 203)  # odd on both axes: the last level-1 row/column averages fewer pixels


def make_output(path, identity=None, resume=False, **kwargs):
    settings = dict(image_dtype="uint16", mask_dtype="uint8", instance_dtype="uint32", n_probabilities=2)
    settings.update(chunk=64, pixel_size_um=0.5, identity=identity or {"input": "a.tif", "tile": (128, 128)})
    settings.update(kwargs)
    return create_output(path, SHAPE, resume=resume, **settings)


def test_output_round_trip_read_by_ome_zarr_py(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60000, SHAPE).astype(np.uint16)
    mask = (rng.integers(0, 3, SHAPE) * 100).astype(np.uint8)
    instances = rng.integers(0, 5000, SHAPE).astype(np.uint32)
    prob = rng.random((2, *SHAPE)).astype(np.float32)
    path = tmp_path / "out.ome.zarr"
    out = make_output(path, class_names={0: "background", 100: "cell", 200: "edge"})
    assert out.image.chunks == (64, 64) and out.probabilities.chunks == (1, 64, 64) and out.shape == SHAPE
    worker = open_output(path)  # what a worker process does: reopen by path, write its block
    worker.image[:], worker.mask[:], worker.instances[:], worker.probabilities[:] = image, mask, instances, prob
    finish_output(path, levels=3)

    nodes = read_back(path)
    assert set(nodes) == {"out", "mask", "instances"}
    levels, transforms, meta = nodes["mask"]
    assert [t[0]["scale"] for t in transforms] == [[0.5, 0.5], [1.0, 1.0], [2.0, 2.0]]
    assert all(len(t) == 1 for t in transforms)  # labels take every other pixel: no centre shift
    np.testing.assert_array_equal(levels[0], mask)
    np.testing.assert_array_equal(levels[1], mask[::2, ::2])
    np.testing.assert_array_equal(levels[2], mask[::4, ::4])
    assert meta["properties"] == {0: {"class": "background"}, 100: {"class": "cell"}, 200: {"class": "edge"}}
    np.testing.assert_array_equal(nodes["instances"][0][1], instances[::2, ::2])
    levels, transforms, _ = nodes["out"]
    assert transforms[1] == [
        {"type": "scale", "scale": [1.0, 1.0]},
        {"type": "translation", "translation": [0.25, 0.25]},
    ]
    np.testing.assert_array_equal(levels[1], np.rint(hand_mean2(image)).astype(np.uint16))
    prob_levels = read_back(path / "probabilities")["out probabilities"][0]
    np.testing.assert_allclose(prob_levels[1], hand_mean2(prob), rtol=1e-6)

    with open_image(path) as img:  # the output reads back as an input at the right scale
        assert img.kind == "ome-zarr" and img.pixel_size_um == 0.5
        np.testing.assert_array_equal(img.array[:, :], image)


def test_existing_output_refused_unless_same_identity_and_resume(tmp_path):
    path = tmp_path / "out.ome.zarr"
    make_output(path).mask[:64, :64] = 7
    with pytest.raises(UserInputError, match=r"exists with the output of this image and settings; `resume`"):
        make_output(path)
    with pytest.raises(UserInputError) as info:
        make_output(path, identity={"input": "b.tif", "tile": (128, 128)}, resume=True)
    message = str(info.value)
    assert message.startswith(f"{path}: holds the output of another image or settings (input 'a.tif' there, 'b.tif'")
    assert "choose another `out` or remove it" in message and "\n" not in message
    with pytest.raises(UserInputError, match=r"chunk 64 there, 128 here"):
        make_output(path, chunk=128, resume=True)
    again = make_output(path, resume=True)  # reopened, not cleared
    assert (again.mask[:64, :64] == 7).all() and again.mask[64:, 64:].max() == 0

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="is not an output folder of unet_tf"):
        make_output(theirs, resume=True)
    assert (theirs / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty.ome.zarr"
    empty.mkdir()
    assert make_output(empty, instance_dtype=None, n_probabilities=0).instances is None


def test_write_ome_zarr_from_a_lazy_tiff(tmp_path, image):
    tifffile.imwrite(
        tmp_path / "a.tif",
        image,
        tile=(64, 64),
        resolution=(4.0, 4.0),
        resolutionunit=1,
        metadata=None,
        description="ImageJ=1.11a\nunit=micron\n",
    )
    with open_image(tmp_path / "a.tif") as tif:
        write_ome_zarr(tmp_path / "a.ome.zarr", tif.array, pixel_size_um=tif.pixel_size_um, chunk=64, levels=2)
    levels, transforms, _ = read_back(tmp_path / "a.ome.zarr")["a"]
    np.testing.assert_array_equal(levels[0], image)
    np.testing.assert_array_equal(levels[1], np.rint(hand_mean2(image)).astype(np.uint16))
    assert transforms[0][0]["scale"] == [0.25, 0.25]
    assert open_image(tmp_path / "a.ome.zarr").pixel_size_um == 0.25
    with pytest.raises(UserInputError, match="exists"):
        write_ome_zarr(tmp_path / "a.ome.zarr", image)


def test_pyramid_levels_and_bounded_windows():
    assert level_shapes((30000, 30000)) == [(30000 // 2**k + (k > 4),) * 2 for k in range(7)]
    assert level_shapes((30000, 30000))[-1] == (469, 469) and level_shapes((512, 100)) == [(512, 100)]
    assert level_shapes((5, 3), levels=4) == [(5, 3), (3, 2), (2, 1), (1, 1)]

    class Watched(np.ndarray):
        largest = 0

        def __getitem__(self, key):
            window = np.asarray(super().__getitem__(key))
            Watched.largest = max(Watched.largest, window.size)
            return window

    source = np.arange(1000 * 900, dtype=np.uint16).reshape(1000, 900).view(Watched)
    target = zarr.create_array(zarr.storage.MemoryStore(), shape=(500, 450), dtype="uint16", chunks=(100, 100))
    write_level(source, target, labels=True)
    np.testing.assert_array_equal(target[:], np.asarray(source)[::2, ::2])
    assert Watched.largest == 200 * 200  # one target chunk's source window at a time, never the whole level
