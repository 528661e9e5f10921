import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from unet_tf.config import AugmentConfig
from unet_tf.data import augment as A

OFF = dict(elastic=False, flip_rot90=False, affine_prob=0.0, intensity_prob=0.0)
STRONG = {
    "elastic": dict(OFF, elastic=True, elastic_prob=1.0, elastic_alpha=15.0),
    "affine": dict(OFF, affine_prob=1.0, rotation_deg=30.0, scale_min=0.8, scale_max=1.25, translate_px=10.0),
    "flip_rot90": dict(OFF, flip_rot90=True),
    "combined": dict(
        elastic=True,
        elastic_prob=1.0,
        elastic_alpha=15.0,
        flip_rot90=True,
        affine_prob=1.0,
        rotation_deg=30.0,
        scale_min=0.8,
        scale_max=1.25,
        translate_px=10.0,
        intensity_prob=0.0,
    ),
}


def blob_mask(size=96, n_classes=5, seed=0):
    """Smooth random blobs with class ids 0..n_classes-1 (uint8 [size, size])."""
    rng = np.random.default_rng(seed)
    field = ndimage.zoom(rng.random((6, 6)), size / 6, order=3)[:size, :size]
    edges = np.quantile(field, np.linspace(0, 1, n_classes + 1)[1:-1])
    return np.digitize(field, edges).astype(np.uint8)


def warp(image, coords, method="bilinear"):
    """Sample a [H, W, 1] array at float32 [P, P, 2] coordinates (reflected outside)."""
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image, out_type=tf.int64)
    flat = tf.reshape(image, [-1])
    coords = A.reflect_coordinates(coords, shape[0], shape[1])
    if method == "nearest":
        out = A.warp_nearest(flat, 0, shape[1], coords)
    else:
        out = A.warp_bilinear(tf.cast(flat, tf.float32), 0, shape[0], shape[1], coords)
    return out[..., tf.newaxis]


def augment(image, mask, seed, cfg, weight=None):
    """sample_patch of a whole [P, P, 1] example (image, mask[, weight]) centred on it."""
    size = image.shape[0]
    out = A.sample_patch(
        tf.reshape(tf.cast(image, tf.float32), [-1]),
        tf.reshape(mask, [-1]),
        None if weight is None else tf.reshape(tf.cast(weight, tf.float32), [-1]),
        tf.constant(0, tf.int64),
        tf.constant(size, tf.int64),
        tf.constant(image.shape[1], tf.int64),
        tf.constant([(size - 1) / 2, (image.shape[1] - 1) / 2], tf.float32),
        tf.cast(seed, tf.int64),
        cfg,
        size,
    )
    return out if weight is not None else out[:2]


def run(image, mask, seed, **cfg):
    """sample_patch on 2-D arrays, back to 2-D numpy."""
    x, m = augment(tf.constant(image[..., None]), tf.constant(mask[..., None]), seed, AugmentConfig(**cfg))
    return x.numpy()[..., 0], m.numpy()[..., 0]


def dihedral_images(x):
    return [
        np.flip(np.rot90(x, k), axes) if axes is not None else np.rot90(x, k) for k in range(4) for axes in (None, 0)
    ]


# === Coordinates and warps ===


def test_identity_coordinates_warp_exactly():
    x = np.random.default_rng(0).random((40, 40, 1)).astype(np.float32)
    coords = A.sampling_coordinates(40, tf.constant([19.5, 19.5]))
    assert np.array_equal(warp(x, coords).numpy(), x)
    assert np.array_equal(warp(x, coords, "nearest").numpy(), x)
    # an integer shift is an exact crop
    coords = A.sampling_coordinates(16, tf.constant([10 + 7.5, 5 + 7.5]))
    assert np.array_equal(warp(x, coords).numpy(), x[10:26, 5:21])


def test_outside_coordinates_are_reflected_like_numpy():
    x = np.random.default_rng(1).random((12, 9)).astype(np.float32)
    padded = np.pad(x, 30, mode="reflect")  # pads wider than the image: repeated mirror
    coords = A.sampling_coordinates(20, tf.constant([-25 + 9.5, 4 + 9.5]))
    out = warp(x[..., None], coords).numpy()[..., 0]
    np.testing.assert_array_equal(out, padded[5:25, 34:54])


def test_bilinear_is_exact_on_a_linear_ramp():
    r, c = np.mgrid[0:32, 0:32].astype(np.float32)
    ramp = (2 * r + 3 * c)[..., None]
    coords = tf.constant([[[3.25, 7.5], [10.75, 0.1]]], tf.float32)
    out = warp(ramp, coords).numpy()[..., 0]
    np.testing.assert_allclose(out, [[2 * 3.25 + 3 * 7.5, 2 * 10.75 + 3 * 0.1]], rtol=1e-6)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flips", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_dihedral_matrix_matches_numpy(k, flips):
    x = np.random.default_rng(2).random((11, 11)).astype(np.float32)
    m = A.dihedral_matrix(tf.constant(k), tf.constant(flips[0]), tf.constant(flips[1]))
    out = warp(x[..., None], A.sampling_coordinates(11, tf.constant([5.0, 5.0]), m))
    expected = np.rot90(x, k)
    for axis, on in enumerate(flips):
        expected = np.flip(expected, axis) if on else expected
    np.testing.assert_array_equal(out.numpy()[..., 0], expected)


def test_elastic_field_is_smooth_and_scaled():
    field = A.elastic_field(tf.constant([3, 4]), 64, 3, 10.0, 3.0).numpy()
    assert field.shape == (64, 64, 2)
    assert 1.0 < field.std() < 30.0
    assert np.abs(np.diff(field, axis=0)).max() < 2.0  # smooth: < 2 px per pixel


# === sample_patch ===


def test_disabled_and_all_off_configs_are_identity():
    x = np.random.default_rng(3).random((48, 48)).astype(np.float32)
    m = blob_mask(48)
    out = run(x, m, [1, 2], enabled=False)
    assert np.array_equal(out[0], x) and np.array_equal(out[1], m)
    out = run(x, m, [1, 2], **OFF)  # through the coordinate map and warp
    assert np.array_equal(out[0], x) and np.array_equal(out[1], m)


def test_flips_rot90_are_one_of_the_eight_and_the_same_for_mask():
    x = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    m = (x * 5).astype(np.uint8)
    seen = set()
    for s in range(16):
        xo, mo = run(x, m, [s, 0], **STRONG["flip_rot90"])
        hits = [i for i, d in enumerate(dihedral_images(x)) if np.array_equal(xo, d)]
        assert len(hits) == 1
        assert np.array_equal(mo, dihedral_images(m)[hits[0]])
        seen.add(hits[0])
    assert len(seen) >= 5


@pytest.mark.parametrize("name", list(STRONG))
def test_image_and_mask_stay_aligned(name):
    mask = blob_mask(96, 5, seed=7)
    image = mask.astype(np.float32)
    for s in range(4):
        xo, mo = run(image, mask, [s, 11], **STRONG[name])
        assert set(np.unique(mo)) <= set(np.unique(mask))  # no new label value
        agree = np.round(xo) == mo
        assert agree.mean() > 0.97, (name, s, agree.mean())
        # exact inside blobs: where the output mask is constant over 5x5
        interior = ndimage.maximum_filter(mo, 5, mode="constant", cval=99) == ndimage.minimum_filter(
            mo, 5, mode="constant", cval=0
        )
        assert interior.mean() > 0.2  # enough pixels to test
        assert agree[interior].all(), (name, s)
        if name != "flip_rot90":
            assert not np.array_equal(mo, mask)  # something did move


@pytest.mark.parametrize("name", list(STRONG))
def test_weight_map_and_ignore_ids_come_from_the_mask_pixel(name):
    """The weight map holds each pixel's own flat position: after any warp the
    weight names the source pixel, whose mask id (255 = ignore included) must be
    the output mask id, everywhere, and no weight may be interpolated."""
    size = 64
    mask = blob_mask(size, 4, seed=8)
    mask[mask == 3] = 255  # ignore
    position = np.arange(size * size, dtype=np.float32).reshape(size, size)
    image = np.where(mask == 255, 3, mask).astype(np.float32)
    for s in range(3):
        x, m, w = augment(
            tf.constant(image[..., None]),
            tf.constant(mask[..., None]),
            [s, 5],
            AugmentConfig(**STRONG[name]),
            weight=tf.constant(position[..., None]),
        )
        m, w = m.numpy()[..., 0], w.numpy()[..., 0]
        assert w.dtype == np.float32 and np.array_equal(w, np.round(w))  # nearest: no mixing
        np.testing.assert_array_equal(m, mask.ravel()[w.astype(np.int64)])
        assert set(np.unique(m)) <= {0, 1, 2, 255} and (m == 255).any()
        # the image is aligned with both (bilinear: exact inside blobs)
        interior = ndimage.maximum_filter(m, 5, mode="constant", cval=255) == ndimage.minimum_filter(
            m, 5, mode="constant", cval=0
        )
        assert interior.mean() > 0.1
        np.testing.assert_array_equal(np.round(x.numpy()[..., 0])[interior], np.where(m == 255, 3, m)[interior])


def test_intensity_jitter_changes_image_only():
    x = np.random.default_rng(5).random((32, 32)).astype(np.float32)
    m = blob_mask(32)
    xo, mo = run(x, m, [9, 9], **dict(OFF, intensity_prob=1.0))
    assert np.array_equal(mo, m)
    assert np.all(np.isfinite(xo)) and not np.allclose(xo, x)
    # still strongly correlated with the input: intensity only, no motion
    assert np.corrcoef(xo.ravel(), x.ravel())[0, 1] > 0.8


def test_same_seed_same_output_different_seed_different():
    x = np.random.default_rng(6).random((64, 64)).astype(np.float32)
    m = blob_mask(64)
    a = run(x, m, [1, 2])
    b = run(x, m, [1, 2])
    c = run(x, m, [1, 3])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_works_inside_tf_data_map_with_int32_mask():
    x = np.random.default_rng(8).random((4, 32, 32, 1)).astype(np.float32)
    m = (x * 3).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, m, np.arange(8).reshape(4, 2)))
    ds = ds.map(lambda i, k, s: augment(i, k, s, AugmentConfig()), num_parallel_calls=tf.data.AUTOTUNE)
    outs = list(ds.as_numpy_iterator())
    assert len(outs) == 4
    for xo, mo in outs:
        assert xo.shape == (32, 32, 1) and xo.dtype == np.float32
        assert mo.dtype == np.int32 and set(np.unique(mo)) <= {0, 1, 2}


def test_signed_gamma_hand_values_sign_and_order():
    x = np.array([-2.0, -1.0, -0.5, -0.01, 0.0, 0.01, 0.25, 1.0, 2.0], np.float32)
    for g in (0.8, 1.2):
        y = A.signed_gamma(tf.constant(x), g).numpy()
        np.testing.assert_allclose(y, np.sign(x) * np.abs(x) ** g, rtol=1e-6)
        assert np.all(np.diff(y) > 0)  # strictly increasing: order kept
        assert np.all(y[x < 0] < 0) and y[x == 0] == 0
        np.testing.assert_allclose(y[[1, 7]], [-1.0, 1.0])
    np.testing.assert_allclose(A.signed_gamma(tf.constant(x), 0.8).numpy()[[2, 6]], [-(0.5**0.8), 0.25**0.8], rtol=1e-6)
    np.testing.assert_array_equal(A.signed_gamma(tf.constant(x), 1.0).numpy(), x)


def test_gamma_jitter_keeps_negative_values_negative_and_ordered():
    # Normalized images hold values below 0 (under the 2nd percentile); gamma must not clip them to 0.
    x = tf.constant(np.linspace(-0.3, 1.3, 64, dtype=np.float32).reshape(8, 8, 1))
    only_gamma = AugmentConfig(gamma=0.4, contrast=0.0, brightness=0.0, noise_std=0.0)
    for seed in ([1, 2], [3, 4], [5, 6]):
        y = A.intensity_jitter(x, tf.constant(seed, tf.int64), only_gamma).numpy().ravel()
        assert np.all(y[x.numpy().ravel() < 0] < 0)
        assert np.all(np.diff(y) > 0)
    identity = AugmentConfig(gamma=0.0, contrast=0.0, brightness=0.0, noise_std=0.0)
    np.testing.assert_array_equal(A.intensity_jitter(x, tf.constant([1, 2], tf.int64), identity).numpy(), x.numpy())
