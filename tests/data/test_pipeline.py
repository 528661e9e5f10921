import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from unet_tf.config import AugmentConfig
from unet_tf.data.pipeline import encode_targets, encode_weighted_targets, make_dataset
from unet_tf.data.sampling import (
    balanced_shares,
    bright_background,
    patch_order,
    rare_classes_from_counts,
    tile_origins,
    tile_spans,
    validation_plan,
    validation_spans,
)
from unet_tf.data.targets import IGNORE_ID
from unet_tf.errors import UserInputError

GEOMETRY_ONLY = AugmentConfig(
    elastic_prob=1.0, elastic_alpha=12.0, affine_prob=1.0, rotation_deg=25.0, intensity_prob=0.0
)


def pairs(shapes, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.random(s, dtype=np.float32) for s in shapes]
    masks = [rng.integers(0, n_classes, s).astype(np.uint8) for s in shapes]
    return images, masks


def batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def n_targets(n_classes):
    """K: target channels before the weight channel."""
    return 1 if n_classes == 2 else n_classes


# === Targets and plans ===


def test_encode_targets_binary_and_one_hot():
    ids = tf.constant([[[0], [1]], [[2], [1]]], tf.uint8)  # [2, 2, 1]
    binary = encode_targets(ids[..., :1] % 2, 2).numpy()
    assert binary.shape == (2, 2, 1) and binary.dtype == np.float32
    assert binary[..., 0].tolist() == [[0, 1], [0, 1]]
    hot = encode_targets(ids, 3).numpy()
    assert hot.shape == (2, 2, 3)
    assert hot.argmax(-1).tolist() == [[0, 1], [2, 1]] and np.all(hot.sum(-1) == 1)


def test_encode_weighted_targets_zero_on_ignore():
    ids = tf.constant([[[0], [1]], [[IGNORE_ID], [2]]], tf.uint8)
    w = tf.constant([[[2.0], [3.0]], [[4.0], [5.0]]])
    y = encode_weighted_targets(ids, w, 3).numpy()
    assert y.shape == (2, 2, 4) and y.dtype == np.float32
    assert y[..., 3].tolist() == [[2, 3], [0, 5]]  # weight, 0 where ignored
    assert y[..., :3].tolist() == [[[1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 0, 1]]]
    every = tf.constant(np.arange(256, dtype=np.uint8)[:, None])  # the gather table, row by row
    for n_classes in (2, 3, 7):
        expected = np.concatenate([encode_targets(every, n_classes).numpy(), (np.arange(256) < n_classes)[:, None]], -1)
        np.testing.assert_array_equal(encode_weighted_targets(every, None, n_classes).numpy(), expected)
    binary = encode_weighted_targets(ids % 2 + tf.cast(ids == IGNORE_ID, tf.uint8) * 254, None, 2).numpy()
    assert binary.tolist() == [[[0, 1], [1, 1]], [[0, 0], [0, 1]]]  # [target, weight]


def test_tile_origins():
    assert tile_origins(100, 32).tolist() == [0, 32, 64, 68]
    assert tile_origins(64, 32).tolist() == [0, 32]
    assert tile_origins(20, 32).tolist() == [0]
    assert validation_plan([(40, 20)], 32).tolist() == [[0, 0, 0], [0, 8, 0]]


def test_rare_class_rule():
    # fractions: 0.70, 0.20, 0.06, 0.04 -> below 10 %: 2, 3; median of (.2,.06,.04)=.06 -> 3
    assert rare_classes_from_counts(np.array([70, 20, 6, 4])) == (2, 3)
    # fractions 0.4, 0.3, 0.2, 0.1 (none < 10 %), median 0.2 -> class 3
    assert rare_classes_from_counts(np.array([0, 40, 30, 20, 10])[1:]) == (3,)
    assert rare_classes_from_counts(np.array([78, 22])) == ()  # isbi-like binary
    assert rare_classes_from_counts(np.array([95, 5])) == (1,)


# === Training patches ===


@pytest.mark.parametrize("n_classes", [2, 4])
def test_training_batches_shapes_dtypes_and_count(n_classes):
    images, masks = pairs([(70, 90), (40, 50)], n_classes)
    ds = make_dataset(
        images,
        masks,
        n_classes,
        training=True,
        patch_size=32,
        batch_size=4,
        patches_per_image=5,
        augment=AugmentConfig(),
        seed=1,
    )
    got = batches(ds)
    assert [x.shape[0] for x, _ in got] == [4, 4, 2]  # 2 images x 5 patches
    k = n_targets(n_classes)
    for x, y in got:
        assert x.shape[1:] == (32, 32, 1) and x.dtype == np.float32
        assert y.shape[1:] == (32, 32, k + 1) and y.dtype == np.float32
        assert np.all(np.isfinite(x))
        assert set(np.unique(y)) <= {0.0, 1.0}
        assert np.all(y[..., k] == 1)  # no weight maps, nothing ignored
        if k > 1:
            assert np.all(y[..., :k].sum(-1) == 1)


def test_unaugmented_patches_are_exact_crops_of_image_and_mask():
    shape = (60, 75)
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)  # value -> position
    mask = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(np.uint8)
    ds = make_dataset([image], [mask], 3, training=True, patch_size=32, batch_size=8, patches_per_image=8, seed=2)
    x, y = batches(ds)[0]
    origins = set()
    for xi, yi in zip(x[..., 0], y[..., :3].argmax(-1)):
        r, c = divmod(int(xi[0, 0]), shape[1])
        np.testing.assert_array_equal(xi, image[r : r + 32, c : c + 32])
        np.testing.assert_array_equal(yi, mask[r : r + 32, c : c + 32])
        origins.add((r, c))
    assert len(origins) > 4  # random positions


def test_image_smaller_than_patch_is_reflect_padded():
    image, mask = pairs([(20, 25)], 2, seed=3)
    ds = make_dataset(image, mask, 2, training=True, patch_size=32, batch_size=2, patches_per_image=2)
    x, y = batches(ds)[0]
    expected = np.pad(image[0], ((6, 6), (4, 3)), mode="reflect")
    np.testing.assert_array_equal(x[0, ..., 0], expected)
    np.testing.assert_array_equal(y[0, ..., 0], np.pad(mask[0], ((6, 6), (4, 3)), mode="reflect"))


def test_augmented_patches_keep_image_and_mask_aligned():
    rng = np.random.default_rng(4)
    mask = np.kron(rng.integers(0, 4, (10, 10)), np.ones((16, 16))).astype(np.uint8)
    ds = make_dataset(
        [mask.astype(np.float32)],
        [mask],
        4,
        training=True,
        patch_size=48,
        batch_size=8,
        patches_per_image=8,
        augment=GEOMETRY_ONLY,
        seed=5,
    )
    x, y = batches(ds)[0]
    ids = y[..., :4].argmax(-1)
    agree = np.round(x[..., 0]) == ids
    # bilinear image vs nearest mask differ only next to label edges
    size = (1, 5, 5)
    interior = ndimage.maximum_filter(ids, size, mode="constant", cval=99) == ndimage.minimum_filter(
        ids, size, mode="constant", cval=-1
    )  # not at borders
    assert interior.mean() > 0.3 and agree[interior].all()
    assert agree.mean() > 0.9


def test_epochs_differ_and_seed_repeats():
    images, masks = pairs([(80, 80), (50, 70)], 3)
    kw = dict(training=True, patch_size=32, batch_size=4, patches_per_image=4, augment=AugmentConfig())
    ds = make_dataset(images, masks, 3, seed=7, **kw)
    first, second = batches(ds)[0], batches(ds)[0]
    assert not np.array_equal(first[0], second[0])  # a new draw every epoch
    again = batches(make_dataset(images, masks, 3, seed=7, **kw))[0]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    other = batches(make_dataset(images, masks, 3, seed=8, **kw))[0]
    assert not np.array_equal(first[0], other[0])


def test_oversampling_finds_a_tiny_rare_blob():
    mask = np.zeros((256, 256), np.uint8)
    mask[:, 128:] = 1
    mask[200:205, 30:35] = 2  # 25 px of class 2
    image = np.zeros(mask.shape, np.float32)

    def fraction_with_rare(p):
        ds = make_dataset(
            [image],
            [mask],
            3,
            training=True,
            patch_size=32,
            batch_size=32,
            patches_per_image=64,
            oversample_rare=p,
            seed=9,
        )
        return np.mean([np.any(y[..., 2] > 0, axis=(1, 2)).mean() for _, y in batches(ds)])

    never, often = fraction_with_rare(0.0), fraction_with_rare(0.9)
    assert never < 0.15 and often > 0.75


def test_patch_order_hand_cases():
    np.testing.assert_array_equal(patch_order(3, 2), [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(patch_order(3, 2, [5, 5, 5]), patch_order(3, 2))  # equal shares: unchanged
    # 12 patches, one each first, the other 9 as 2:1:1 (4.5, 2.25, 2.25) -> 5, 2, 2 and the largest remainder
    order = patch_order(3, 4, [2, 1, 1])
    np.testing.assert_array_equal(np.bincount(order), [6, 3, 3])
    assert set(order[:4]) == {0, 1, 2} and set(order[4:8]) == {0, 1, 2}  # spread over the pass, not in blocks
    assert np.bincount(patch_order(2, 10, [1000, 1]))[1] == 1  # never starved
    with pytest.raises(UserInputError, match="shares"):
        patch_order(2, 4, [1, 0])


def test_background_balance_counts_and_shares():
    rng = np.random.default_rng(0)
    dark = [np.where(rng.random((30, 30)) < 0.2, 200.0, 10.0) + rng.random((30, 30)) for _ in range(4)]  # spots
    bright = [np.where(rng.random((30, 30)) < 0.2, 0.1, 0.9) + rng.random((30, 30)) * 0.01]  # dark nuclei
    groups = bright_background(dark + bright)
    np.testing.assert_array_equal(groups, [False] * 4 + [True])
    shares = balanced_shares(groups)
    np.testing.assert_allclose(shares, [0.5] * 4 + [1.0])  # 1/sqrt(4), 1/sqrt(1): groups 2 : 1
    assert not bright_background([np.zeros((8, 8))])[0]  # flat: no background to speak of


def test_image_shares_set_how_often_each_image_is_cut():
    images = [np.full((40, 40), v, np.float32) for v in (0.0, 1.0, 2.0)]  # each image tells its patches apart
    masks = [np.zeros((40, 40), np.uint8)] * 3
    ds = make_dataset(
        images, masks, 2, training=True, patch_size=32, batch_size=4, patches_per_image=8, image_shares=[2, 1, 1]
    )
    centres = np.concatenate([x[:, 16, 16, 0] for x, _ in batches(ds)])
    np.testing.assert_array_equal(np.bincount(np.round(centres).astype(int)), [12, 6, 6])


# === Validation tiles ===


@pytest.mark.parametrize("n_classes", [2, 3])
def test_validation_tiles_rebuild_every_image(n_classes):
    shapes = [(70, 45), (20, 25), (64, 64)]  # non-multiple, smaller than a patch, multiple
    images, masks = pairs(shapes, n_classes, seed=10)
    ds = make_dataset(images, masks, n_classes, training=False, patch_size=32, batch_size=3)
    x = np.concatenate([b[0] for b in batches(ds)])
    y = np.concatenate([b[1] for b in batches(ds)])  # second pass: from the cache
    plan = validation_plan(shapes, 32)
    assert len(x) == len(plan) == 6 + 1 + 4
    k = n_targets(n_classes)
    ids = y[..., 0] if n_classes == 2 else y[..., :k].argmax(-1)
    assert set(np.unique(y[..., k])) == {0.0, 1.0}
    for i, (h, w) in enumerate(shapes):
        rebuilt_x = np.full((max(h, 32), max(w, 32)), np.nan, np.float32)
        rebuilt_m = np.zeros_like(rebuilt_x)
        counted = np.zeros(rebuilt_x.shape, np.int64)  # times a pixel has weight > 0
        for t in np.flatnonzero(plan[:, 0] == i):
            r, c = plan[t, 1:]
            owned = y[t, ..., k] > 0
            rebuilt_x[r : r + 32, c : c + 32] = x[t, ..., 0]
            rebuilt_m[r : r + 32, c : c + 32][owned] = ids[t][owned]
            counted[r : r + 32, c : c + 32] += owned
        np.testing.assert_array_equal(rebuilt_x[:h, :w], images[i])
        np.testing.assert_array_equal(rebuilt_m[:h, :w], masks[i])
        assert np.all(counted[:h, :w] == 1) and counted.sum() == h * w  # once each, padding never


def test_tile_spans_hand_cases():
    # 100 px, tiles at 0, 32, 64, 68: the last one owns only its 4 px past 96.
    assert tile_spans(100, 32).tolist() == [[0, 32], [0, 32], [0, 32], [28, 32]]
    assert tile_spans(64, 32).tolist() == [[0, 32], [0, 32]]
    assert tile_spans(20, 32).tolist() == [[0, 20]]  # reflect padding 20..31 owned by none
    assert tile_spans(33, 32).tolist() == [[0, 32], [31, 32]]
    assert validation_spans([(40, 20)], 32).tolist() == [[0, 32, 0, 20], [24, 32, 0, 20]]


def test_validation_counts_each_pixel_once_in_weight_and_dice():
    # 40 x 20 px, 32-px tiles: rows 0..31 and 8..39 overlap on 24 rows; columns 20..31 are reflect padding.
    rng = np.random.default_rng(21)
    image = rng.random((40, 20), dtype=np.float32)
    mask = (image + rng.normal(0, 0.3, image.shape) > 0.6).astype(np.uint8)
    mask[:2, :3] = IGNORE_ID  # ignored pixels stay out too
    ds = make_dataset([image], [mask], 2, training=False, patch_size=32, batch_size=1)
    xs, ys = zip(*batches(ds))
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (2, 32, 32, 1)
    assert y[..., 1].sum() == 40 * 20 - 6  # every pixel of the image once, ignored ones not at all

    from unet_tf.training.metrics import DiceScore

    metric = DiceScore(2)
    for xb, yb in zip(xs, ys):
        metric.update_state(yb, xb)  # the image itself as the predicted probability
    kept = mask != IGNORE_ID
    pred, truth = image[kept] > 0.5, mask[kept] == 1
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    assert float(metric.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-6)  # float32 result


# === Weight maps and ignored pixels ===


def instance_example(size=160, seed=11):
    """An instance image of 16 px blocks (ids 0..5); its class mask (ids >= 4 ->
    ignore); and a weight map that is a function of the instance id."""
    rng = np.random.default_rng(seed)
    inst = np.kron(rng.integers(0, 6, (size // 16, size // 16)), np.ones((16, 16), np.int64))
    mask = np.where(inst >= 4, IGNORE_ID, inst).astype(np.uint8)
    weight = (1.0 + 2.5 * inst).astype(np.float32)  # 1, 3.5, 6, 8.5 on classes 0..3
    return inst, mask, weight


def test_weights_and_ignore_stay_aligned_through_elastic_and_affine_warps():
    inst, mask, weight = instance_example()
    ds = make_dataset(
        [inst.astype(np.float32)],
        [mask],
        4,
        training=True,
        patch_size=48,
        batch_size=8,
        patches_per_image=8,
        augment=GEOMETRY_ONLY,
        seed=12,
        weights=[weight],
    )
    x, y = batches(ds)[0]
    targets, w = y[..., :4], y[..., 4]
    ignored = w == 0
    assert 0.05 < ignored.mean() < 0.6
    assert np.all(targets[ignored] == 0) and np.all(targets[~ignored].sum(-1) == 1)
    # nearest mask and nearest weights read the same source pixel: exact, everywhere
    ids = targets.argmax(-1)
    np.testing.assert_array_equal(w[~ignored], 1.0 + 2.5 * ids[~ignored])
    # the bilinear image agrees with them away from block edges
    source_id = np.where(ignored, -1, ids)  # instance 4 or 5 where ignored
    image_id = np.round(x[..., 0])
    agree = np.where(ignored, image_id >= 4, image_id == source_id)
    size = (1, 5, 5)
    interior = ndimage.maximum_filter(image_id, size, mode="constant", cval=99) == ndimage.minimum_filter(
        image_id, size, mode="constant", cval=-1
    )
    assert interior.mean() > 0.3 and agree[interior].all()
    assert agree.mean() > 0.9


def test_unaugmented_weight_channel_is_the_exact_crop():
    shape = (50, 70)
    position = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    mask = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(np.uint8)
    mask[10:20, 30:60] = IGNORE_ID
    ds = make_dataset(
        [position],
        [mask],
        3,
        training=True,
        patch_size=32,
        batch_size=8,
        patches_per_image=8,
        seed=13,
        weights=[position + 1.0],
    )
    x, y = batches(ds)[0]
    for xi, yi in zip(x[..., 0], y):
        r, c = divmod(int(xi[0, 0]), shape[1])
        crop = np.s_[r : r + 32, c : c + 32]
        expected = np.where(mask[crop] == IGNORE_ID, 0.0, position[crop] + 1.0)
        np.testing.assert_array_equal(yi[..., 3], expected)
        np.testing.assert_array_equal(yi[..., :3].sum(-1), (mask[crop] != IGNORE_ID).astype(float))


def test_validation_tiles_carry_weights_and_ignore():
    shapes = [(70, 45), (20, 25)]
    images, masks = pairs(shapes, 2, seed=14)
    masks[0][5:30, 10:20] = IGNORE_ID
    weights = [im * 3.0 + 0.5 for im in images]
    ds = make_dataset(images, masks, 2, training=False, patch_size=32, batch_size=4, weights=[weights[0], None])
    y = np.concatenate([b[1] for b in batches(ds)])
    plan = validation_plan(shapes, 32)
    expected_maps = [np.where(masks[0] == IGNORE_ID, 0.0, weights[0]), np.ones(shapes[1])]
    for i, (h, w) in enumerate(shapes):
        rebuilt = np.zeros((max(h, 32), max(w, 32)), np.float32)  # summed: each pixel's weight in one tile only
        for t in np.flatnonzero(plan[:, 0] == i):
            r, c = plan[t, 1:]
            rebuilt[r : r + 32, c : c + 32] += y[t, ..., 1]
        np.testing.assert_array_equal(rebuilt[:h, :w], expected_maps[i].astype(np.float32))
        assert np.all(rebuilt[h:] == 0) and np.all(rebuilt[:, w:] == 0)  # reflect padding weighs nothing


def test_weight_and_ignore_user_errors():
    images, masks = pairs([(40, 40), (40, 40)], 2)
    with pytest.raises(UserInputError, match="2 images but 1 weight maps"):
        make_dataset(images, masks, 2, training=True, patch_size=32, weights=[images[0]])
    with pytest.raises(UserInputError, match="weight map 1: shape"):
        make_dataset(images, masks, 2, training=True, patch_size=32, weights=[None, images[1][:30]])
    with pytest.raises(UserInputError, match="weight map 0: weights must be finite and >= 0"):
        make_dataset(images, masks, 2, training=True, patch_size=32, weights=[-images[0], None])
    bad = masks[0].copy()
    bad[0, 0] = 254  # neither a class nor the ignore id
    with pytest.raises(UserInputError, match=r"mask 0: class ids \[254\]"):
        make_dataset(images, [bad, masks[1]], 2, training=True, patch_size=32)
    with pytest.raises(UserInputError, match="2..255"):
        make_dataset(images, masks, 256, training=True, patch_size=32)


# === Input errors ===


def test_user_errors_name_the_problem():
    images, masks = pairs([(40, 40), (40, 40)], 2)
    with pytest.raises(UserInputError, match="2 images but 1 masks"):
        make_dataset(images, masks[:1], 2, training=True)
    with pytest.raises(UserInputError, match="no images"):
        make_dataset([], [], 2, training=True)
    with pytest.raises(UserInputError, match="image 1"):
        make_dataset(images, [masks[0], masks[1][:30]], 2, training=True, patch_size=32)
    with pytest.raises(UserInputError, match="at least 16"):
        make_dataset(images, masks, 2, training=True, patch_size=8)
    with pytest.raises(UserInputError, match="mask 0"):
        make_dataset(images, [masks[0] + 2, masks[1]], 2, training=False, patch_size=32)


# === Real data ===


@pytest.mark.slow  # real data
def test_batch_from_isbi2012_if_available():
    root = os.environ.get("UNET_TF_DATA")
    folder = Path(root) / "isbi2012" / "train" if root else None
    if folder is None or not (folder / "image" / "00.png").exists():
        pytest.skip("UNET_TF_DATA/isbi2012 not available")
    import cv2

    images, masks = [], []
    for name in ("00.png", "01.png", "02.png"):
        raw = cv2.imread(str(folder / "image" / name), cv2.IMREAD_UNCHANGED).astype(np.float32)
        label = cv2.imread(str(folder / "label" / name), cv2.IMREAD_UNCHANGED)
        lo, hi = np.percentile(raw, (2, 98))
        images.append((raw - lo) / (hi - lo))
        masks.append((label == 0).astype(np.uint8))  # membrane (0) -> class 1
    ds = make_dataset(
        images,
        masks,
        2,
        training=True,
        patch_size=128,
        batch_size=4,
        patches_per_image=4,
        augment=AugmentConfig(),
        seed=0,
    )
    x, y = next(iter(ds))
    x, y = x.numpy(), y.numpy()
    assert x.shape == (4, 128, 128, 1) and y.shape == (4, 128, 128, 2)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert np.all(np.isfinite(x)) and x.min() > -1.0 and x.max() < 2.0
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert 0.05 < y[..., 0].mean() < 0.5 and np.all(y[..., 1] == 1)
