"""Streaming prediction: identical to the whole-image path, objects across band edges, bad input."""

import functools

import numpy as np
import pytest
import tifffile

from unet_tf.config import ModelConfig, PredictConfig
from unet_tf.data.normalize import percentile_normalize
from unet_tf.errors import UserInputError, note_run
from unet_tf.io.windows import WindowReader
from unet_tf.objects.bands import BandObjects
from unet_tf.objects.morphometry import measure_objects
from unet_tf.prediction import streaming
from unet_tf.prediction.tiled import predict_bands, predict_tiled

NAMES = ("background", "a", "b")


def tiny_model(class_values, class_names):
    import keras

    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    keras.utils.set_random_seed(0)
    info = ModelInfo(tuple(class_values), tuple(class_names), patch_size=64, size_divisor=4)
    return attach_info(build_model(ModelConfig(base_filters=4, depth=2), len(class_values)), info)


@pytest.fixture(scope="module")
def binary_model():
    return tiny_model((0, 255), ("background", "cell"))


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory):
    """A ~2000 x 1500 uint16 image with blobs and noise, stored tiled + compressed (read in windows)."""
    import cv2

    rng = np.random.default_rng(1)
    coarse = rng.random((2000 // 40, 1500 // 40), dtype=np.float32)
    image = cv2.resize(coarse, (1500, 2000), interpolation=cv2.INTER_CUBIC) * 40000
    image = np.clip(image + rng.normal(8000, 1500, image.shape), 0, 65535).astype(np.uint16)
    path = tmp_path_factory.mktemp("in") / "big.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    return path, image


def assert_same_objects(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key in w:
            if key == "centroid_y":
                assert g[key] == pytest.approx(w[key], rel=0, abs=1e-9)
            elif key in ("mean_intensity", "max_intensity"):
                assert g[key] == pytest.approx(w[key], rel=1e-12, nan_ok=True), key
            else:
                assert g[key] == w[key], key


# === predict_bands ===


def test_bands_cover_the_rows_in_order_and_stack_to_predict_tiled():
    rng = np.random.default_rng(0)
    image = rng.random((150, 70), dtype=np.float32)
    reads = []

    def read_rows(r0, r1):
        reads.append((r0, r1))
        return image[r0:r1]

    def fn(b):
        return np.concatenate([np.tanh(3 * b), b * b], -1)

    bands = list(predict_bands(fn, read_rows, image.shape, tile=32, overlap=8, batch_size=3, size_divisor=8))
    assert [r0 for r0, _ in bands] == list(np.cumsum([0] + [len(r) for _, r in bands[:-1]]))
    assert sum(len(r) for _, r in bands) == 150 and len(bands) > 3
    assert max(r1 - r0 for r0, r1 in reads) <= 32  # never more than one tile row of input
    whole = predict_tiled(fn, image, tile=32, overlap=8, batch_size=3, size_divisor=8)
    np.testing.assert_array_equal(np.concatenate([r for _, r in bands]), whole)
    np.testing.assert_allclose(whole[..., 1], image**2, rtol=1e-5, atol=1e-6)


# === Statistics ===


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_exact_percentiles_equal_numpy(dtype):
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype)
    for n in (1, 2, 7, 1000, 4097):
        x = rng.integers(info.min, info.max, n, endpoint=True).astype(dtype)
        hist = np.bincount(x.astype(np.int64) - info.min, minlength=2 ** (8 * x.itemsize))
        for q in ((2.0, 98.0), (0.0, 100.0), (1.0, 99.8), (33.3, 66.7)):
            np.testing.assert_array_equal(
                streaming.exact_percentiles(hist, int(info.min), x.dtype, q), np.percentile(x, q)
            )


def test_image_percentiles_exact_for_integers_and_subsampled_for_floats(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 60000, (1100, 90)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "i.tif", image)
    with WindowReader(tmp_path / "i.tif") as reader:
        lo, hi, exact = streaming.image_percentiles(reader, (2.0, 98.0))
    assert exact and (lo, hi) == tuple(np.percentile(image, (2.0, 98.0)))
    np.testing.assert_array_equal(streaming.normalize_rows(image, lo, hi), percentile_normalize(image))

    floats = image.astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", floats)
    monkeypatch.setattr(streaming, "SUBSAMPLE_PIXELS", 90 * 100)  # every 11th row
    assert streaming.subsample_rows_stride((1100, 90), 90 * 100) == 11
    with WindowReader(tmp_path / "f.tif") as reader:
        lo, hi, exact = streaming.image_percentiles(reader, (2.0, 98.0))
    assert not exact and (lo, hi) == tuple(np.percentile(floats[::11], (2.0, 98.0)))


# === Objects per band ===


def test_band_objects_equal_measure_objects_for_any_band_split():
    rng = np.random.default_rng(4)
    noise = rng.random((120, 80))
    ids = np.where(noise > 0.6, 1, 0) + np.where(noise > 0.85, 1, 0)  # classes 0, 1, 2, touching
    ids[10:110, 40] = 1  # one tall object crossing every band edge
    ids = ids.astype(np.uint8)
    raw = rng.integers(0, 4000, ids.shape).astype(np.uint16)
    want = measure_objects(ids, NAMES, image_name="x", pixel_size=0.5, min_size=2, image=raw)
    assert all(r["max_intensity"] >= r["mean_intensity"] > 0 for r in want)  # not a NaN == NaN comparison
    for heights in ([120], [1] * 120, [7, 50, 3, 60], [33, 33, 33, 21]):
        acc = BandObjects(NAMES, 80, image_name="x", pixel_size=0.5, min_size=2)
        edges = np.cumsum([0] + heights)
        for a, b in zip(edges[:-1], edges[1:]):
            acc.add(ids[a:b], raw[a:b])
        assert_same_objects(acc.rows(), want)
    acc = BandObjects(NAMES, 80)
    acc.add(ids[:10])
    with pytest.raises(ValueError, match="every band of ids or with none"):
        acc.add(ids[10:20], raw[10:20])
    # above the buffer cap the tall object is cut into pieces that add up to its area
    acc = BandObjects(NAMES, 80, image_name="x", max_pixels=80 * 40)
    for a in range(0, 120, 30):
        acc.add(ids[a : a + 30])
    rows = acc.rows()
    assert len(rows) > len(measure_objects(ids, NAMES))
    assert sum(r["area_px"] for r in rows) == int((ids > 0).sum())


def test_object_crossing_a_band_edge_is_counted_once_with_its_area():
    """A U whose arms meet only below the band edge: two pieces in band 1, one object."""
    ids = np.zeros((20, 12), np.uint8)
    ids[2:15, 2:4] = 1  # left arm, rows 2..14
    ids[2:15, 8:10] = 1  # right arm
    ids[13:15, 2:10] = 1  # the bottom of the U, below the edge at row 10
    ids[17:19, 0:3] = 2  # another class, entirely in band 2
    ids[5, 11] = 2  # finished in band 1 while its rows are kept for the open U: measured once
    acc = BandObjects(NAMES, 12)
    acc.add(ids[:10])
    acc.add(ids[10:])
    rows = acc.rows()
    assert [(r["class"], r["object_id"], r["area_px"]) for r in rows] == [
        ("a", 1, 13 * 4 + 2 * 4),
        ("b", 1, 1),
        ("b", 2, 6),
    ]
    assert (rows[0]["bbox_y0"], rows[0]["bbox_y1"], rows[0]["bbox_x0"], rows[0]["bbox_x1"]) == (2, 15, 2, 10)


# === predict_file_streaming ===


def test_streamed_outputs_identical_to_predict_image(tmp_path, big_tiff):
    from unet_tf.prediction.image import engine, predict_image
    from unet_tf.prediction.outputs import probability_bands

    model = tiny_model((0, 50, 100), NAMES)
    path, image = big_tiff
    config = PredictConfig(tile=128, overlap=32, batch_size=8, save_probabilities=True, min_size=3)
    want = predict_image(model, image, config)
    predict_fn, info = engine(model)
    result = streaming.predict_file_streaming(predict_fn, info, path, tmp_path, "big", config)
    mask = tifffile.imread(tmp_path / "big_mask.tif")
    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert len(np.unique(mask)) == 3  # not a vacuous comparison
    np.testing.assert_array_equal(mask, want.mask)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "big_prob.tif"), probability_bands(want.probabilities))
    assert result["exact_percentiles"] and result["shape"] == image.shape
    assert_same_objects(result["objects"], measure_objects(want.ids, NAMES, image_name="big", min_size=3, image=image))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big_mask.tif", "big_prob.tif"]  # no temporaries


def test_streamed_objects_csv_equals_the_whole_image_one(tmp_path, binary_model):
    """predict_files with ``stream`` (forced) writes the objects.csv of the whole-image path, intensities too."""
    import csv

    from unet_tf.data.layouts import Sample
    from unet_tf.prediction.files import predict_files

    rng = np.random.default_rng(3)
    image = (rng.random((300, 260)) * 3000).astype(np.uint16)
    image[40:120, 30:90] += 20000  # bright blocks: objects of either sign of the untrained model
    image[180:260, 150:240] += 12000
    tifffile.imwrite(tmp_path / "img.tif", image)
    tables = {}
    for stream in (False, True):
        out = tmp_path / f"out_{stream}"
        config = PredictConfig(tile=64, overlap=16, stream=stream, overlay=False, min_size=0)
        predict_files(binary_model, [Sample(tmp_path / "img.tif")], out, config, log=lambda _: None)
        with open(out / "objects.csv", newline="") as f:
            tables[stream] = list(csv.DictReader(f))
    whole, streamed = tables[False], tables[True]
    assert len(whole) > 3 and len(streamed) == len(whole)
    for w, s in zip(whole, streamed):
        assert (s["class"], s["object_id"], s["area_px"], s["bbox_y0"]) == (
            w["class"],
            w["object_id"],
            w["area_px"],
            w["bbox_y0"],
        )
        for key in ("mean_intensity", "max_intensity"):
            assert float(s[key]) == pytest.approx(float(w[key]), rel=1e-9), key  # NaN fails here


def test_not_enough_disk_space_is_said_before_writing(tmp_path, big_tiff, binary_model, monkeypatch):
    from unet_tf.prediction.image import engine

    predict_fn, info = engine(binary_model)
    monkeypatch.setattr(streaming.shutil, "disk_usage", lambda p: type("U", (), {"free": 10**6})())
    calls = []
    with pytest.raises(UserInputError, match=r"big\.tif: its outputs need up to 0\.00 GB.*0\.00 GB free"):
        streaming.predict_file_streaming(lambda b: calls.append(b) or b, info, big_tiff[0], tmp_path / "o", "big")
    assert not calls and not list((tmp_path / "o").iterdir())
    assert streaming.output_bytes((2000, 1500), info, PredictConfig(save_probabilities=True)) == 3_000_000 * 17


def test_tiff_unreadable_in_windows_falls_back_to_a_whole_read(tmp_path, binary_model, monkeypatch, capsys):
    from unet_tf.prediction.image import engine, predict_image

    rng = np.random.default_rng(0)
    image = (rng.random((300, 200)) * 200).astype(np.uint8)
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, image, compression="zlib", rowsperstrip=300)  # one compressed strip
    monkeypatch.setattr(streaming, "WindowReader", functools.partial(WindowReader, max_block_bytes=1000))
    predict_fn, info = engine(binary_model)
    config = PredictConfig(tile=64, overlap=16)
    with note_run():  # notes are said once per run (outside runs once per process)
        streaming.predict_file_streaming(predict_fn, info, path, tmp_path / "o", "strip", config)
    assert capsys.readouterr().err.count("cannot be read in windows") == 1
    want = predict_image(binary_model, image, config).mask
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "strip_mask.tif"), want)


def test_whole_image_bytes_per_pixel_hand_computed():
    bpp = streaming.whole_image_bytes_per_pixel
    assert bpp(2, 1) == 2 * 2 + 4 + 1 + 1 + 9  # uint16, binary, defaults: the objects stage is the largest
    assert bpp(1, 3, save_probabilities=True) == 2 + 12 + 1 + 1 + (4 * 3 + 4)
    assert bpp(1, 1, save_probabilities=True, overlay=False) == 2 + 4 + 1 + 1 + (4 * 2 + 4)  # K' = 2 bands
    assert bpp(4, 1, instances="split") == 8 + 4 + 1 + 1 + 4 + 100
    assert bpp(2, 3, mask_itemsize=2, instances="model", overlay=False) == 4 + 12 + 1 + 2 + 4 + 30


def test_should_stream_from_the_header_and_the_memory_available(tmp_path, binary_model):
    from unet_tf.prediction.image import engine

    tifffile.imwrite(tmp_path / "s.tif", np.zeros((100, 200), np.uint8))
    info = engine(binary_model)[1]
    need = (2 + 4 + 1 + 1 + 9) * 100 * 200  # 17 B/px: 340000 bytes, streamed above half the memory
    assert streaming.should_stream(tmp_path / "s.tif", info, available=2 * need)[0] is False
    too_big, reason = streaming.should_stream(tmp_path / "s.tif", info, available=2 * need - 1)
    assert (
        too_big
        and reason
        == "s.tif: predicting it whole needs about 0.0 GB (17 B/px x 200x100), more than 50% of the 0.0 GB available"
    )
    assert not streaming.should_stream(tmp_path / "s.tif", info)[0]  # this machine holds 100 x 200 px


def test_an_image_too_large_for_the_memory_is_streamed_and_the_log_says_why(tmp_path, binary_model, monkeypatch):
    from unet_tf.data.layouts import Sample
    from unet_tf.prediction.files import predict_files

    tifffile.imwrite(tmp_path / "img.tif", (np.random.default_rng(0).random((200, 150)) * 255).astype(np.uint8))
    monkeypatch.setattr(streaming, "available_memory", lambda: 200 * 150 * 17 * 2 - 1)
    log = []
    predict_files(
        binary_model, [Sample(tmp_path / "img.tif")], tmp_path / "o", PredictConfig(tile=64, overlap=16), log.append
    )
    assert "note: img.tif: predicting it whole needs about 0.0 GB (17 B/px x 150x200), more than 50%" in "\n".join(log)
    assert not (tmp_path / "o" / "img_overlay.png").exists()  # the band-wise path writes no overlay
    assert (tmp_path / "o" / "img_mask.tif").exists()


@pytest.mark.parametrize("classes", [2, 3])
def test_whole_image_peak_memory_stays_under_the_estimate(tmp_path, classes):
    """tracemalloc peak of predict_image + its files + its objects <= whole_image_bytes_per_pixel x pixels."""
    import tracemalloc

    import cv2

    from unet_tf.models.file import ModelInfo
    from unet_tf.prediction.files import object_rows
    from unet_tf.prediction.image import predict_image
    from unet_tf.prediction.outputs import write_outputs

    names = ("background", "a", "b")[:classes]
    info = ModelInfo((0, 50, 100)[:classes], names, patch_size=64, size_divisor=4)

    class Smooth:  # a cheap stand-in for a trained network: objects follow the image's blobs
        def __call__(self, batch):
            p = 1 / (1 + np.exp(-8 * (batch - 0.5)))
            return p if classes == 2 else np.concatenate([1 - p, p / 2, p / 2], -1)

    Smooth.info = info
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.random((30, 30), dtype=np.float32), (1200, 1200), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image * 40000 + 8000, 0, 65535).astype(np.uint16)
    config = PredictConfig(tile=64, overlap=16, save_probabilities=True, min_size=0)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = predict_image(Smooth(), image, config)
        write_outputs(tmp_path, "img", image, result, info, config)
        rows = object_rows(result, info, image, "img", None, 0)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(rows) > 5
    # the image is held by the test, not read: its 2 x itemsize counts once here, hence - 2
    estimate = streaming.whole_image_bytes_per_pixel(2, 1 if classes == 2 else 3, save_probabilities=True) - 2
    assert peak <= estimate * image.size, f"{peak / image.size:.1f} B/px > {estimate}"
