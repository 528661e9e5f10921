"""Tiling plan, blending window, tiled prediction (against a whole-image pass), TTA, ids, progress."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest

from unet_tf.errors import UserInputError
from unet_tf.prediction.tiled import ProgressBar, make_predict_fn, predict_tiled, probabilities_to_ids
from unet_tf.prediction.tiling import blending_window, plan_tiles, reflect_indices, tile_starts, tiling_padding

# === Tiling plan ===


@pytest.mark.parametrize(
    "length, tile, overlap",
    [(10, 64, 16), (64, 64, 16), (65, 64, 16), (100, 64, 0), (1000, 64, 16), (5521, 512, 64), (130, 64, 63)],
)
def test_tile_starts_cover_overlap_and_end_at_length(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length
    steps = np.diff(starts)
    assert np.all(steps > 0)
    assert np.all(tile - steps >= overlap)
    assert steps.max() - steps.min() <= 1  # evenly spread
    covered = np.zeros(length, int)
    for s in starts:
        covered[s : s + tile] += 1
    assert covered.min() >= 1
    assert len(starts) == -(-(length - tile) // (tile - overlap)) + 1  # no more tiles than needed


def test_tile_starts_aligned():
    starts = tile_starts(5536, 512, 64, align=16)
    assert all(s % 16 == 0 for s in starts)
    assert starts[-1] + 512 == 5536
    assert np.all(512 - np.diff(starts) >= 64)
    with pytest.raises(ValueError):
        tile_starts(5530, 512, 64, align=16)  # length - tile not a multiple of align
    with pytest.raises(ValueError):
        tile_starts(100, 64, 64)  # overlap must be < tile


def test_plan_covers_every_pixel():
    shape, tile = (300, 171), 64
    plan = plan_tiles(shape, tile, 20)
    covered = np.zeros(shape, int)
    for y, x in plan:
        assert 0 <= y <= shape[0] - tile and 0 <= x <= shape[1] - tile
        covered[y : y + tile, x : x + tile] += 1
    assert covered.min() >= 1
    assert len(plan) == len(set(plan)) == len(tile_starts(300, 64, 20)) * len(tile_starts(171, 64, 20))


def test_tiling_padding():
    (top, bottom), (left, right) = tiling_padding((70, 45), 64, 16, 16)
    assert top == left == 16  # ceil(16 / 2) rounded up to the divisor
    assert (70 + top + bottom) % 16 == 0 and 45 + left + right == 80  # at least a tile, multiple of 16
    assert bottom >= top and right >= left


# === Blending window ===


@pytest.mark.parametrize("kind", ["gaussian", "cosine"])
def test_blending_window_shape_and_symmetry(kind):
    w = blending_window(64, kind)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert w.min() > 0 and w.max() == pytest.approx(1.0)
    assert w[32, 32] == w.max() and w[0, 0] == w.min()
    np.testing.assert_array_equal(w, np.rot90(w))
    np.testing.assert_array_equal(w, w[:, ::-1])
    assert blending_window(64, kind) is w  # cached
    with pytest.raises(ValueError):
        w[0, 0] = 5  # read-only: the cache cannot be corrupted
    with pytest.raises(ValueError):
        blending_window(64, "box")


@pytest.mark.parametrize("kind", ["gaussian", "cosine"])
def test_accumulated_window_is_positive_and_normalizes_a_constant(kind):
    shape, tile = (150, 200), 64
    w = blending_window(tile, kind)
    acc = np.zeros(shape, np.float32)
    weighted = np.zeros(shape, np.float32)
    for y, x in plan_tiles(shape, tile, 16):
        acc[y : y + tile, x : x + tile] += w
        weighted[y : y + tile, x : x + tile] += 0.37 * w
    assert acc.min() > 0
    np.testing.assert_allclose(weighted / acc, 0.37, rtol=1e-6)


@pytest.mark.parametrize("n, start, size", [(7, -5, 30), (2, -9, 20), (1, -3, 8), (40, -16, 64), (40, 10, 16)])
def test_reflect_indices_match_np_pad(n, start, size):
    values = np.arange(n) * 10
    pad = max(-start, 0), max(start + size - n, 0)
    expected = np.pad(values, pad, mode="reflect")[start + pad[0] : start + pad[0] + size]
    np.testing.assert_array_equal(values[reflect_indices(start, size, n)], expected)


def test_predict_tiled_normalizes_a_constant_prediction():
    image = np.zeros((150, 97), np.float32)
    out = predict_tiled(
        lambda b: np.full(b.shape[:3] + (2,), 0.37, np.float32), image, tile=32, overlap=8, batch_size=3, size_divisor=8
    )
    np.testing.assert_allclose(out, 0.37, rtol=1e-6)


def test_predict_tiled_constant_and_ramp_roundtrip():
    """A predict_fn returning its input rebuilds the image exactly, K=1 and K=2."""
    rng = np.random.default_rng(0)
    image = rng.random((150, 97), dtype=np.float32)
    out = predict_tiled(lambda b: b, image, tile=32, overlap=8, batch_size=3, size_divisor=8)
    assert out.shape == (150, 97, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], image, rtol=1e-5, atol=1e-6)
    two = predict_tiled(lambda b: np.concatenate([b, 1 - b], -1), image, tile=32, overlap=8, size_divisor=8)
    np.testing.assert_allclose(two[..., 1], 1 - image, rtol=1e-5, atol=1e-5)


# === Tiled against whole-image prediction ===


def small_unet(n_out: int = 1, seed: int = 1) -> keras.Model:
    """Depth-2 U-Net-like net, one 3x3 conv per level, no BatchNorm.

    Receptive field radius: 1 (enc1) + 1 (pool) + 2 (enc2) + 2 (pool) + 4
    (bottleneck) + 2 (dec2) + 1 (dec1) = 13 px <= overlap / 2 = 16 in the test.
    """
    keras.utils.set_random_seed(seed)
    conv = dict(padding="same", activation="relu")
    inputs = keras.Input((None, None, 1))
    e1 = keras.layers.Conv2D(6, 3, **conv)(inputs)
    e2 = keras.layers.Conv2D(8, 3, **conv)(keras.layers.MaxPooling2D(2)(e1))
    b = keras.layers.Conv2D(8, 3, **conv)(keras.layers.MaxPooling2D(2)(e2))
    d2 = keras.layers.Conv2D(8, 3, **conv)(keras.layers.Concatenate()([keras.layers.UpSampling2D(2)(b), e2]))
    d1 = keras.layers.Conv2D(6, 3, **conv)(keras.layers.Concatenate()([keras.layers.UpSampling2D(2)(d2), e1]))
    act = "sigmoid" if n_out == 1 else "softmax"
    outputs = keras.layers.Conv2D(n_out, 1, activation=act)(d1)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("n_out, window, atol", [(1, "gaussian", 1e-3), (3, "gaussian", 1e-3), (3, "cosine", 1e-2)])
def test_tiled_equals_whole_image(n_out, window, atol):
    """Tiled == one pass over the same padded image, within 1e-3 (Gaussian window).

    Tiles are aligned with the pooling grid, so a pixel's prediction from one
    tile is exact wherever the tile holds its whole receptive field (radius 13
    < overlap / 2 = 16). The only error is the zero padding of each tile's own
    border, seen by pixels within 13 px of that border; there the window gives
    that tile a small weight next to a neighbour that sees the pixel from
    >= 19 px inside, so the blended error stays below 1e-3 (measured 5.5e-4).
    The cosine (Hann) window falls off only quadratically at the tile border
    (weight ~6 % at 5 px against ~0.3 % for the Gaussian), so its error is
    about 7 times larger (measured 3.9e-3): that is why the Gaussian is the default.
    """
    model = small_unet(n_out)
    rng = np.random.default_rng(3)
    image = rng.normal(size=(96, 128)).astype(np.float32)
    tile, overlap, divisor = 64, 32, 4
    predict_fn = make_predict_fn(model)
    tiled = predict_tiled(
        predict_fn, image, tile=tile, overlap=overlap, batch_size=2, size_divisor=divisor, window=window
    )
    assert tiled.shape == (96, 128, n_out) and tiled.dtype == np.float32
    assert predict_fn.forward.experimental_get_tracing_count() == 1  # 6 batches, one trace

    (top, bottom), (left, right) = tiling_padding(image.shape, tile, overlap, divisor)
    padded = np.pad(image, ((top, bottom), (left, right)), mode="reflect")
    whole = model(padded[None, ..., None], training=False).numpy()[0]
    whole = whole[top : top + 96, left : left + 128]
    np.testing.assert_allclose(tiled, whole, atol=atol)
    # and, away from the image border (where reflect vs zero padding differs), equal to the plain image
    plain = model(image[None, ..., None], training=False).numpy()[0]
    np.testing.assert_allclose(tiled[16:-16, 16:-16], plain[16:-16, 16:-16], atol=atol)
    # the test is not vacuous: a single unaligned, unblended 64-px tile differs from the whole pass
    assert np.abs(model(image[None, 2:66, 2:66, None]).numpy()[0] - plain[2:66, 2:66]).max() > 1e-2


# === TTA ===


def test_tta_identity_round_trip():
    """With predict_fn = identity, all 8 transforms invert exactly: TTA == no TTA == the image."""
    rng = np.random.default_rng(1)
    image = rng.random((80, 52), dtype=np.float32)  # no symmetry: a wrong inverse would show
    calls = []

    def identity(batch):
        calls.append(batch.shape)
        return batch.copy()

    plain = predict_tiled(identity, image, tile=32, overlap=8, batch_size=4, size_divisor=8)
    n_plain = len(calls)
    tta = predict_tiled(identity, image, tile=32, overlap=8, batch_size=4, size_divisor=8, tta=True)
    assert len(calls) == 9 * n_plain
    np.testing.assert_allclose(tta, plain, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tta[..., 0], image, rtol=1e-5, atol=1e-6)


def test_tta_sees_all_eight_orientations():
    """A predict_fn that only looks at tile corners: TTA averages all 8 orientations."""
    seen = set()

    def corner(batch):
        seen.add(float(batch[0, 0, 0, 0]))
        return np.ones_like(batch)

    image = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    predict_tiled(corner, image, tile=32, overlap=0, batch_size=1, size_divisor=1, tta=True)
    assert len(seen) == 4  # each corner of the (single) tile comes to the origin twice


# === Shapes and errors ===


def test_odd_image_smaller_than_tile_and_fixed_batch_shape():
    shapes = []

    def record(batch):
        shapes.append(batch.shape)
        return np.concatenate([batch, 2 * batch], axis=-1)

    image = np.linspace(0, 1, 70 * 45, dtype=np.float32).reshape(70, 45)
    out = predict_tiled(record, image, tile=64, overlap=16, batch_size=3, size_divisor=16)
    assert out.shape == (70, 45, 2)
    np.testing.assert_allclose(out[..., 1], 2 * image, rtol=1e-5, atol=1e-6)

    tiny = np.array([[1.0, 2.0, 3.0]], np.float32)  # 1 x 3: reflected many times over
    np.testing.assert_allclose(predict_tiled(record, tiny, tile=16, overlap=4, size_divisor=4)[..., 0], tiny)

    shapes.clear()
    big = np.zeros((200, 150), np.float32)
    progress = []
    predict_tiled(
        record, big, tile=64, overlap=16, batch_size=3, size_divisor=16, progress=lambda d, t: progress.append((d, t))
    )
    assert set(shapes) == {(3, 64, 64, 1)}
    total = progress[-1][1]
    assert progress[-1] == (total, total) and len(progress) == len(shapes) == -(-total // 3)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_bad_tile_and_overlap():
    image = np.zeros((40, 40), np.float32)
    with pytest.raises(UserInputError, match="multiple"):
        predict_tiled(lambda b: b, image, tile=40, overlap=8, size_divisor=16)
    with pytest.raises(UserInputError, match="overlap"):
        predict_tiled(lambda b: b, image, tile=32, overlap=24, size_divisor=16)
    with pytest.raises(ValueError, match="predict_fn returned"):
        predict_tiled(lambda b: b[:, :16], image, tile=32, overlap=8, size_divisor=16)


# === Ids and progress ===


def test_probabilities_to_ids():
    binary = np.array([[0.1, 0.5], [0.51, 0.9]], np.float32)[..., None]
    np.testing.assert_array_equal(probabilities_to_ids(binary), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(probabilities_to_ids(binary, threshold=0.05), [[1, 1], [1, 1]])
    multi = np.array([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], [[0.2, 0.5, 0.3], [0.3, 0.3, 0.4]]], np.float32)
    ids = probabilities_to_ids(multi)
    assert ids.dtype == np.uint8
    np.testing.assert_array_equal(ids, [[0, 2], [1, 2]])


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar():
    pipe = io.StringIO()
    bar = ProgressBar("image 2/5", width=10, stream=pipe)
    for done in (4, 8, 12):
        bar(done, 24)
    assert pipe.getvalue() == ""  # not a terminal: nothing until the end
    bar(24, 24)
    bar.close()
    assert pipe.getvalue() == "image 2/5 tiles [##########] 24/24\n"

    tty = _Tty()
    bar = ProgressBar("image 2/5", width=10, stream=tty)
    bar(12, 24)
    assert tty.getvalue() == "\rimage 2/5 tiles [#####.....] 12/24"
    bar(24, 24)
    bar.close()
    assert tty.getvalue().endswith("\rimage 2/5 tiles [##########] 24/24\n")
