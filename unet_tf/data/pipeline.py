"""Training and validation batches as a ``tf.data.Dataset`` of ``(x, y)``.

Images are kept whole, at full resolution, packed row-major into ONE flat
float32 tensor (masks: one flat uint8 tensor) with per-image offsets and
shapes: memory is about 1x the float32 images plus 1x the uint8 masks, nothing
padded to the largest image (optional per-pixel weight maps: one more flat
float32 tensor). A patch is gathered straight from that storage
through the sampling-coordinate map of :mod:`unet_tf.data.augment` (crop, elastic,
affine, rot90/flip in one resampling); coordinates outside an image are
reflected, so images smaller than a patch, and patches rotated near a border,
are reflect-padded on the fly.

Targets carry a weight channel: ``y`` is ``[B, P, P, K + 1]``, the K target
channels of :func:`encode_targets` and, last, the per-pixel weight (the weight
map value, 1 without a map). Mask pixels holding :data:`IGNORE_ID` (255) get
weight 0 and all-zero targets: the losses and metrics of this package read the
channel and leave those pixels out (nnU-Net's ignore label); the cross-entropy
losses multiply each pixel's term by its weight (U-Net separation-border
weights, Ronneberger et al. 2015, eq. 2).

Training epochs are finite (``patches_per_image * len(images)`` patches, the
last batch may be smaller) and each pass over the dataset draws new patches
(``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``), so
``model.fit(ds, epochs=E)`` needs no ``steps_per_epoch``; the whole run is
repeatable from ``seed``. ``ds.repeat()`` also draws anew each repetition.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from unet_tf.config import AugmentConfig, n_outputs
from unet_tf.data.augment import sample_patch
from unet_tf.data.sampling import (
    check_arrays,
    check_settings,
    class_counts,
    patch_order,
    rare_candidates,
    rare_classes_from_counts,
    validation_plan,
    validation_spans,
)
from unet_tf.data.targets import IGNORE_ID
from unet_tf.errors import UserInputError


class PackedImages(NamedTuple):
    """Whole images and masks in flat tensors; image ``i`` lives at
    ``flat[offsets[i] : offsets[i] + H_i * W_i]``, row-major."""

    images: tf.Tensor  # float32 [N]
    masks: tf.Tensor  # uint8 [N]
    offsets: tf.Tensor  # int64 [n]
    shapes: tf.Tensor  # int64 [n, 2] (H, W)
    weights: tf.Tensor | None = None  # float32 [N], or None: weight 1 everywhere


# === Targets ===


def encode_targets(mask_ids: tf.Tensor, n_classes: int) -> tf.Tensor:
    """Class ids ``[..., 1]`` (any integer dtype) -> float32 targets ``[..., K]``.

    ``K`` is :func:`unet_tf.config.n_outputs`: for two classes ``K = 1``, 1.0
    where the id is 1; otherwise ``K = C`` one-hot channels. Ids outside
    ``0..C-1`` (:data:`IGNORE_ID`) give all 0.
    """
    ids = tf.cast(mask_ids[..., 0], tf.int32)
    if n_outputs(n_classes) == 1:
        return tf.cast(tf.equal(ids, 1), tf.float32)[..., tf.newaxis]
    return tf.one_hot(ids, n_classes, dtype=tf.float32)


def target_table(n_classes: int) -> np.ndarray:
    """float32 ``[256, K + 1]``: row ``id`` is the target of a uint8 class id,
    :func:`encode_targets` then weight 1; rows of ids outside ``0..C-1``
    (:data:`IGNORE_ID`) are all 0."""
    k = n_outputs(n_classes)
    table = np.zeros((256, k + 1), np.float32)
    if k == 1:
        table[1, 0] = 1.0
    else:
        table[np.arange(n_classes), np.arange(n_classes)] = 1.0
    table[:n_classes, k] = 1.0
    return table


def encode_weighted_targets(mask_ids: tf.Tensor, weight: tf.Tensor | None, n_classes: int) -> tf.Tensor:
    """uint8 class ids ``[..., 1]`` and weights -> float32 ``[..., K + 1]``.

    Channels ``0..K-1``: :func:`encode_targets`; channel ``K``: ``weight``
    (float32 ``[..., 1]``; None: 1.0), set to 0 where the id is outside
    ``0..C-1`` (in :func:`make_dataset` only :data:`IGNORE_ID` can be).
    """
    ids = tf.cast(mask_ids, tf.int32)
    if weight is None:  # one gather: the cheapest encoding measured (see target_table)
        return tf.gather(tf.constant(target_table(n_classes)), ids[..., 0])
    ignored = ids >= n_classes
    w = tf.where(ignored, tf.zeros_like(weight), tf.cast(weight, tf.float32))
    return tf.concat([encode_targets(mask_ids, n_classes), w], axis=-1)


def pack_images(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], weights: Sequence[np.ndarray] | None = None
) -> PackedImages:
    """Copy 2-D images (as float32), masks (as uint8) and, when given, weight
    maps (as float32) into flat tensors."""
    sizes = [im.size for im in images]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    flat_images = np.empty(int(sum(sizes)), np.float32)
    flat_masks = np.empty(int(sum(sizes)), np.uint8)
    flat_weights = None if weights is None else np.empty(int(sum(sizes)), np.float32)
    for i, (off, im, m) in enumerate(zip(offsets, images, masks)):
        flat_images[off : off + im.size] = im.ravel()
        flat_masks[off : off + im.size] = m.ravel()
        if flat_weights is not None:
            flat_weights[off : off + im.size] = weights[i].ravel()
    return PackedImages(
        images=tf.convert_to_tensor(flat_images),
        masks=tf.convert_to_tensor(flat_masks),
        offsets=tf.constant(offsets),
        shapes=tf.constant(np.array([im.shape for im in images], np.int64).reshape(-1, 2)),
        weights=None if flat_weights is None else tf.convert_to_tensor(flat_weights),
    )


# === Datasets ===


def _patch_origin(size: tf.Tensor, patch_size: int, fraction: tf.Tensor) -> tf.Tensor:
    """int64 start of a patch along an axis of ``size`` px: uniform over the
    positions that fit, or centred (reflect-padded) when the axis is shorter."""
    room = size - patch_size
    uniform = tf.cast(tf.math.floor(fraction * tf.cast(room + 1, tf.float32)), tf.int64)
    return tf.where(room >= 0, tf.minimum(uniform, tf.maximum(room, 0)), room // 2)


def _rare_origin(
    cand_coords: tf.Tensor,
    cand_table: tf.Tensor,
    index: tf.Tensor,
    width: tf.Tensor,
    u: tf.Tensor,
    jitter: tf.Tensor,
    patch_size: int,
) -> tf.Tensor:
    """int64 ``[2]`` origin that puts a random rare pixel (of a random rare class
    present in image ``index``) at the patch centre, +- ``jitter``."""
    counts = cand_table[index, :, 1]
    present = tf.where(counts > 0)[:, 0]
    n_present = tf.cast(tf.size(present), tf.float32)
    cls = present[tf.cast(tf.minimum(u[2] * n_present, n_present - 1), tf.int32)]
    start, count = cand_table[index, cls, 0], cand_table[index, cls, 1]
    pick = tf.minimum(tf.cast(u[3] * tf.cast(count, tf.float32), tf.int64), count - 1)
    flat = cand_coords[start + pick]
    centre = tf.stack([flat // width, flat % width])
    return centre - patch_size // 2 + jitter


def _training_dataset(
    packed: PackedImages,
    order: np.ndarray,
    patch_size: int,
    augment: AugmentConfig | None,
    oversample_rare: float,
    candidates: tuple[np.ndarray, np.ndarray] | None,
    seed: int,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Unbatched ``(image [P,P,1] float32, mask [P,P,1] uint8[, weight [P,P,1]
    float32])`` random patches (the weight when ``packed`` has weights).

    ``order``: the image of each patch of a pass (:func:`patch_order`).
    ``shard=(i, n)`` keeps patches ``k = i, i+n, i+2n, ...`` of each pass (with
    their own random draws), before any patch is cut or augmented.
    """
    p = patch_size
    image_of = tf.constant(order, tf.int64)
    use_rare = candidates is not None and candidates[0].size > 0 and oversample_rare > 0
    if use_rare:
        cand_coords, cand_table = tf.constant(candidates[0]), tf.constant(candidates[1])

    def example(k, r):
        seeds = tf.random.experimental.stateless_split(tf.stack([r, k]), num=4)
        index = image_of[k]
        shape = packed.shapes[index]
        u = tf.random.stateless_uniform([4], seeds[0])
        origin = tf.stack([_patch_origin(shape[0], p, u[0]), _patch_origin(shape[1], p, u[1])])
        if use_rare:
            jitter = tf.random.stateless_uniform([2], seeds[1], -(p // 4), p // 4 + 1, dtype=tf.int64)
            go_rare = tf.logical_and(
                tf.random.stateless_uniform([], seeds[2]) < oversample_rare, tf.reduce_any(cand_table[index, :, 1] > 0)
            )
            origin = tf.cond(
                go_rare, lambda: _rare_origin(cand_coords, cand_table, index, shape[1], u, jitter, p), lambda: origin
            )
            # keep the patch inside images that are large enough
            origin = tf.where(shape >= p, tf.clip_by_value(origin, 0, tf.maximum(shape - p, 0)), origin)
        centre = tf.cast(origin, tf.float32) + (p - 1) / 2.0
        return _cut(packed, index, centre, seeds[3], augment, p)

    n_patches = len(order)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(n_patches), draws.take(n_patches))
    if shard[1] > 1:
        ds = ds.shard(shard[1], shard[0])
    return ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _cut(
    packed: PackedImages,
    index: tf.Tensor,
    centre: tf.Tensor,
    seed: tf.Tensor | None,
    augment: AugmentConfig | None,
    patch_size: int,
) -> tuple[tf.Tensor, ...]:
    """``(image, mask)`` or, when ``packed`` has weights, ``(image, mask, weight)``
    patches of image ``index`` (see :func:`unet_tf.data.augment.sample_patch`)."""
    shape = packed.shapes[index]
    image, mask, weight = sample_patch(
        packed.images,
        packed.masks,
        packed.weights,
        packed.offsets[index],
        shape[0],
        shape[1],
        centre,
        seed,
        augment,
        patch_size,
    )
    return (image, mask) if weight is None else (image, mask, weight)


def _validation_dataset(packed: PackedImages, patch_size: int, shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Unbatched tiles of :func:`validation_plan` (rows ``i, i+n, ...`` with
    ``shard=(i, n)``), no augmentation; elements as :func:`_training_dataset`.

    Mask pixels outside the tile's :func:`validation_spans` rectangle (covered
    by an earlier tile, or reflect padding) hold :data:`IGNORE_ID`, so every
    image pixel counts exactly once in the validation loss and metrics.
    """
    shapes = [tuple(s) for s in packed.shapes.numpy().tolist()]
    plan = validation_plan(shapes, patch_size)[shard[0] :: shard[1]]
    spans = validation_spans(shapes, patch_size)[shard[0] :: shard[1]]
    centre_shift = (patch_size - 1) / 2.0
    local = tf.range(patch_size, dtype=tf.int64)

    def tile(row, span):
        centre = tf.cast(row[1:], tf.float32) + centre_shift
        image, mask, *weight = _cut(packed, row[0], centre, None, None, patch_size)
        rows = (local >= span[0]) & (local < span[1])
        cols = (local >= span[2]) & (local < span[3])
        owned = (rows[:, tf.newaxis] & cols[tf.newaxis, :])[..., tf.newaxis]
        mask = tf.where(owned, mask, tf.constant(IGNORE_ID, mask.dtype))
        return (image, mask, *weight)

    ds = tf.data.Dataset.from_tensor_slices((plan, spans))
    return ds.map(tile, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _candidates(
    masks: Sequence[np.ndarray], n_classes: int, oversample_rare: float, rare_classes: Sequence[int] | None, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`rare_candidates` of the rare classes (default
    :func:`rare_classes_from_counts`), or None without oversampling."""
    if oversample_rare <= 0:
        return None
    if rare_classes is None:
        rare_classes = rare_classes_from_counts(class_counts(masks, n_classes))
    bad = [c for c in rare_classes if not 0 <= c < n_classes]
    if bad:
        raise UserInputError(f"rare classes {bad} outside 0..{n_classes - 1}")
    return rare_candidates(masks, list(rare_classes), seed)


def make_dataset(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    n_classes: int,
    *,
    training: bool,
    patch_size: int = 256,
    batch_size: int = 8,
    patches_per_image: int = 16,
    augment: AugmentConfig | None = None,
    oversample_rare: float = 0.0,
    rare_classes: Sequence[int] | None = None,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    weights: Sequence[np.ndarray | None] | None = None,
    image_shares: Sequence[float] | None = None,
) -> tf.data.Dataset:
    """Batches ``(x, y)`` of patches cut from whole, full-resolution images.

    Args:
        images: 2-D float arrays (normalized), any sizes; copied once as float32.
        masks: 2-D class ids ``0..n_classes-1`` or :data:`IGNORE_ID` (255: in
            no loss term and no metric), shaped as ``images``; copied as uint8.
        n_classes: C (2..255); targets have ``K = 1`` channel when C == 2, else ``K = C``.
        training: True: ``patches_per_image * len(images)`` random (augmented)
            patches per pass, new ones every pass. False: the tiles of
            :func:`validation_plan` (no augmentation), identical every pass
            and cached; each image pixel counts once (the rest of a tile is
            :data:`IGNORE_ID`: :func:`validation_spans`).
        augment: augmentation settings (None: none); training only.
        oversample_rare: probability that a training patch is centred (+- P/4)
            on a pixel of a rare class, when its image has one.
        rare_classes: class ids to oversample (default :func:`rare_classes_from_counts`).
        seed: makes the whole sequence of batches repeatable.
        shard: ``(i, n)``: input pipeline ``i`` of ``n`` (one per worker; (0, 1): all).
            Training keeps patches ``k = i, i+n, ...`` of each pass, validation
            tiles ``i, i+n, ...``, chosen before anything is cut; with the same
            ``seed`` the ``n`` shards hold exactly the unsharded patches.
        weights: per-pixel loss weights (e.g. separation-border weights), one finite
            ``>= 0`` (H, W) map per image (None: all 1), warped like the mask (nearest).
        image_shares: each image's relative share of a pass's training patches
            (:func:`patch_order`). Default None: ``patches_per_image`` each.

    Returns:
        Dataset of ``x`` float32 ``[B, P, P, 1]`` and ``y`` float32
        ``[B, P, P, K + 1]``: targets, then the weight channel (0 on ignore
        pixels, whose target channels are 0 too; see :func:`encode_weighted_targets`).
    """
    check_settings(images, masks, n_classes, patch_size, batch_size, patches_per_image, oversample_rare, shard)
    images, masks, weights = check_arrays(images, masks, weights, n_classes)
    packed = pack_images(images, masks, weights)
    if training:
        candidates = _candidates(masks, n_classes, oversample_rare, rare_classes, seed)
        order = patch_order(len(images), patches_per_image, image_shares)  # the image of every patch
        ds = _training_dataset(packed, order, patch_size, augment, oversample_rare, candidates, seed, shard)
        ds = ds.batch(batch_size)
    else:  # cache the uint8 ids (and weights), not the float targets
        ds = _validation_dataset(packed, patch_size, shard).batch(batch_size).cache()
    ds = ds.map(lambda x, m, *w: (x, encode_weighted_targets(m, w[0] if w else None, n_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)
