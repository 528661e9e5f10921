"""Training and validation batches as a ``tf.data.Dataset`` of ``(x, y)``.

Images are kept whole, at full resolution, packed row-major into ONE flat
float32 tensor (masks: one flat uint8 tensor) with per-image offsets and
shapes: memory is about 1x the float32 images plus 1x the uint8 masks, nothing
padded to the largest image. A patch is gathered straight from that storage
through the sampling-coordinate map of :mod:`unet_tf.augment` (crop, elastic,
affine, rot90/flip in one resampling); coordinates outside an image are
reflected, so images smaller than a patch, and patches rotated near a border,
are reflect-padded on the fly.

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

from .augment import sample_pair
from .config import AugmentConfig
from .errors import UserInputError

MAX_CANDIDATES = 20_000  # rare-class centre candidates kept per class per image


class PackedImages(NamedTuple):
    """Whole images and masks in flat tensors; image ``i`` lives at
    ``flat[offsets[i] : offsets[i] + H_i * W_i]``, row-major."""

    images: tf.Tensor  # float32 [N]
    masks: tf.Tensor  # uint8 [N]
    offsets: tf.Tensor  # int64 [n]
    shapes: tf.Tensor  # int64 [n, 2] (H, W)


# === Targets ===


def encode_targets(mask_ids: tf.Tensor, n_classes: int) -> tf.Tensor:
    """Class ids ``[..., 1]`` (any integer dtype) -> float32 targets ``[..., K]``.

    ``n_classes == 2``: ``K = 1``, 1.0 where the id is 1. Otherwise ``K = C``
    one-hot channels.
    """
    ids = tf.cast(mask_ids[..., 0], tf.int32)
    if n_classes == 2:
        return tf.cast(tf.equal(ids, 1), tf.float32)[..., tf.newaxis]
    return tf.one_hot(ids, n_classes, dtype=tf.float32)


# === NumPy planning (pure) ===


def tile_origins(length: int, patch_size: int) -> np.ndarray:
    """Tile starts along one axis: step ``patch_size``, the last tile shifted to end
    at the border; ``[0]`` when ``length <= patch_size`` (the tile is reflect-padded)."""
    if length <= patch_size:
        return np.zeros(1, np.int64)
    starts = np.arange(0, length - patch_size, patch_size, dtype=np.int64)
    return np.append(starts, length - patch_size)


def validation_plan(shapes: Sequence[tuple[int, int]], patch_size: int) -> np.ndarray:
    """int64 ``[T, 3]`` rows ``(image index, row0, col0)``: the validation tiles, in
    dataset order, covering every image completely."""
    rows = [
        (i, r, c)
        for i, (h, w) in enumerate(shapes)
        for r in tile_origins(h, patch_size)
        for c in tile_origins(w, patch_size)
    ]
    return np.asarray(rows, np.int64).reshape(-1, 3)


def class_counts(masks: Sequence[np.ndarray], n_classes: int) -> np.ndarray:
    """int64 ``[C]`` pixel count of every class over all masks."""
    total = np.zeros(n_classes, np.int64)
    for m in masks:
        total += np.bincount(m.ravel(), minlength=n_classes)[:n_classes]
    return total


def rare_classes_from_counts(counts: np.ndarray) -> tuple[int, ...]:
    """Default rare classes: among the present classes other than 0, those whose
    pixel fraction is below 10 % or below the median fraction of those classes."""
    frac = counts / max(int(counts.sum()), 1)
    present = [c for c in range(1, len(counts)) if counts[c] > 0]
    if not present:
        return ()
    median = float(np.median(frac[present]))
    return tuple(c for c in present if frac[c] < 0.10 or frac[c] < median)


def rare_candidates(
    masks: Sequence[np.ndarray], rare: Sequence[int], seed: int, cap: int = MAX_CANDIDATES
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the rare classes, to centre oversampled patches on.

    Returns:
        coords int64 ``[M]``: row-major flat positions within their own image;
        table int64 ``[n_images, len(rare), 2]``: ``(start, count)`` into
        ``coords`` per image and rare class, at most ``cap`` per pair (random
        subsample, seeded).
    """
    rng = np.random.default_rng(seed)
    table = np.zeros((len(masks), len(rare), 2), np.int64)
    chunks, start = [], 0
    for i, m in enumerate(masks):
        flat = m.ravel()
        for j, c in enumerate(rare):
            idx = np.flatnonzero(flat == c)
            if idx.size > cap:
                idx = rng.choice(idx, cap, replace=False)
            table[i, j] = (start, idx.size)
            chunks.append(idx.astype(np.int64))
            start += idx.size
    coords = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    return coords, table


def pack_images(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> PackedImages:
    """Copy 2-D images (as float32) and masks (as uint8) into flat tensors."""
    sizes = [im.size for im in images]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    flat_images = np.empty(int(sum(sizes)), np.float32)
    flat_masks = np.empty(int(sum(sizes)), np.uint8)
    for off, im, m in zip(offsets, images, masks):
        flat_images[off : off + im.size] = im.ravel()
        flat_masks[off : off + im.size] = m.ravel()
    return PackedImages(
        images=tf.convert_to_tensor(flat_images),
        masks=tf.convert_to_tensor(flat_masks),
        offsets=tf.constant(offsets),
        shapes=tf.constant(np.array([im.shape for im in images], np.int64).reshape(-1, 2)),
    )


# === Input checks ===


def _check_inputs(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    n_classes: int,
    patch_size: int,
    batch_size: int,
    patches_per_image: int,
    oversample_rare: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """2-D float32 images and uint8 masks, or a UserInputError naming the problem."""
    if len(images) == 0:
        raise UserInputError("no images to build a dataset from")
    if len(images) != len(masks):
        raise UserInputError(f"{len(images)} images but {len(masks)} masks")
    if patch_size < 16:
        raise UserInputError(f"patch size must be at least 16, got {patch_size}")
    if not 2 <= n_classes <= 256:
        raise UserInputError(f"number of classes must be 2..256, got {n_classes}")
    if batch_size < 1 or patches_per_image < 1:
        raise UserInputError(
            f"batch size and patches per image must be >= 1, got {batch_size}, "
            f"{patches_per_image}"
        )
    if not 0.0 <= oversample_rare <= 1.0:
        raise UserInputError(f"oversample_rare must be in [0, 1], got {oversample_rare}")
    out_images, out_masks = [], []
    for i, (im, m) in enumerate(zip(images, masks)):
        im, m = np.asarray(im), np.asarray(m)
        if im.ndim == 3 and im.shape[-1] == 1:
            im = im[..., 0]
        if m.ndim == 3 and m.shape[-1] == 1:
            m = m[..., 0]
        if im.ndim != 2 or im.size == 0:
            raise UserInputError(f"image {i}: expected a 2-D grayscale array, got shape {im.shape}")
        if m.dtype != bool and not np.issubdtype(m.dtype, np.integer):
            raise UserInputError(f"mask {i}: expected integer class ids, got {m.dtype}")
        if im.shape != m.shape:
            raise UserInputError(f"image {i}: shape {im.shape} but its mask has shape {m.shape}")
        if m.min() < 0 or m.max() >= n_classes:
            bad = np.unique(m[(m < 0) | (m >= n_classes)])[:5]
            raise UserInputError(
                f"mask {i}: class ids {bad.tolist()} outside 0..{n_classes - 1}"
            )
        out_images.append(im.astype(np.float32, copy=False))
        out_masks.append(m.astype(np.uint8, copy=False))
    return out_images, out_masks


# === Datasets ===


def _patch_origin(
    size: tf.Tensor, patch_size: int, fraction: tf.Tensor
) -> tf.Tensor:
    """int64 start of a patch along an axis of ``size`` px: uniform over the
    positions that fit, or centred (reflect-padded) when the axis is shorter."""
    room = size - patch_size
    uniform = tf.cast(tf.math.floor(fraction * tf.cast(room + 1, tf.float32)), tf.int64)
    return tf.where(room >= 0, tf.minimum(uniform, tf.maximum(room, 0)), room // 2)


def _training_dataset(
    packed: PackedImages,
    n_images: int,
    patch_size: int,
    patches_per_image: int,
    augment: AugmentConfig | None,
    oversample_rare: float,
    candidates: tuple[np.ndarray, np.ndarray] | None,
    seed: int,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Unbatched ``(image [P,P,1] float32, mask [P,P,1] uint8)`` random patches.

    ``shard=(i, n)`` keeps patches ``k = i, i+n, i+2n, ...`` of each pass (with
    their own random draws), before any patch is cut or augmented.
    """
    n_patches = n_images * patches_per_image
    p = patch_size
    use_rare = candidates is not None and candidates[0].size > 0 and oversample_rare > 0
    if use_rare:
        cand_coords = tf.constant(candidates[0])
        cand_table = tf.constant(candidates[1])

    def rare_origin(index, width, u, jitter):
        """Origin that puts a random rare pixel (a random present rare class) at
        the patch centre, +- jitter."""
        counts = cand_table[index, :, 1]
        present = tf.where(counts > 0)[:, 0]
        n_present = tf.cast(tf.size(present), tf.float32)
        cls = present[tf.cast(tf.minimum(u[2] * n_present, n_present - 1), tf.int32)]
        start, count = cand_table[index, cls, 0], cand_table[index, cls, 1]
        pick = tf.minimum(tf.cast(u[3] * tf.cast(count, tf.float32), tf.int64), count - 1)
        flat = cand_coords[start + pick]
        centre = tf.stack([flat // width, flat % width])
        return centre - p // 2 + jitter

    def example(k, r):
        seeds = tf.random.experimental.stateless_split(tf.stack([r, k]), num=4)
        index = k % n_images  # every image patches_per_image times per epoch
        shape = packed.shapes[index]
        u = tf.random.stateless_uniform([4], seeds[0])
        origin = tf.stack(
            [_patch_origin(shape[0], p, u[0]), _patch_origin(shape[1], p, u[1])]
        )
        if use_rare:
            jitter = tf.random.stateless_uniform(
                [2], seeds[1], -(p // 4), p // 4 + 1, dtype=tf.int64
            )
            go_rare = tf.logical_and(
                tf.random.stateless_uniform([], seeds[2]) < oversample_rare,
                tf.reduce_any(cand_table[index, :, 1] > 0),
            )
            origin = tf.cond(
                go_rare, lambda: rare_origin(index, shape[1], u, jitter), lambda: origin
            )
            # keep the patch inside images that are large enough
            origin = tf.where(
                shape >= p, tf.clip_by_value(origin, 0, tf.maximum(shape - p, 0)), origin
            )
        centre = tf.cast(origin, tf.float32) + (p - 1) / 2.0
        return sample_pair(
            packed.images,
            packed.masks,
            packed.offsets[index],
            shape[0],
            shape[1],
            centre,
            seeds[3],
            augment,
            p,
        )

    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(n_patches), draws.take(n_patches))
    if shard[1] > 1:
        ds = ds.shard(shard[1], shard[0])
    return ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _validation_dataset(
    packed: PackedImages, patch_size: int, shard: tuple[int, int] = (0, 1)
) -> tf.data.Dataset:
    """Unbatched tiles of :func:`validation_plan` (rows ``i, i+n, ...`` with
    ``shard=(i, n)``), no augmentation."""
    shapes = [tuple(s) for s in packed.shapes.numpy().tolist()]
    plan = validation_plan(shapes, patch_size)[shard[0] :: shard[1]]
    centre_shift = (patch_size - 1) / 2.0

    def tile(row):
        index = row[0]
        shape = packed.shapes[index]
        centre = tf.cast(row[1:], tf.float32) + centre_shift
        return sample_pair(
            packed.images, packed.masks, packed.offsets[index], shape[0], shape[1],
            centre, None, None, patch_size,
        )

    ds = tf.data.Dataset.from_tensor_slices(plan)
    return ds.map(tile, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


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
) -> tf.data.Dataset:
    """Batches ``(x, y)`` of patches cut from whole, full-resolution images.

    Args:
        images: 2-D float arrays (normalized), any sizes; copied once as float32.
        masks: 2-D class ids ``0..n_classes-1``, same shapes as ``images``.
        n_classes: C; targets have ``K = 1`` channel when C == 2, else ``K = C``.
        training: True: ``patches_per_image * len(images)`` random (augmented)
            patches per pass, new ones every pass. False: the tiles of
            :func:`validation_plan` (every pixel of every image, no
            augmentation), identical every pass and cached.
        augment: augmentation settings (None: none); training only.
        oversample_rare: probability that a training patch is centred (+- P/4)
            on a pixel of a rare class, when its image has one.
        rare_classes: class ids to oversample; default
            :func:`rare_classes_from_counts` over all ``masks``.
        seed: makes the whole sequence of batches repeatable.
        shard: ``(i, n)``: this is input pipeline ``i`` of ``n`` (one per
            worker of a multi-worker run). Training keeps patches ``k = i,
            i+n, ...`` of each pass, validation tiles ``i, i+n, ...``; the
            choice is made on patch indices before anything is cut, so no
            worker augments patches it then drops. With the same ``seed`` on
            every pipeline, the ``n`` shards together hold exactly the patches
            of the unsharded dataset. ``(0, 1)``: everything.

    Returns:
        Dataset of ``x`` float32 ``[B, P, P, 1]`` and ``y`` float32 ``[B, P, P, K]``.
    """
    images, masks = _check_inputs(
        images, masks, n_classes, patch_size, batch_size, patches_per_image, oversample_rare
    )
    if not 0 <= shard[0] < shard[1]:
        raise UserInputError(f"shard {shard[0]} of {shard[1]}: need 0 <= index < count")
    packed = pack_images(images, masks)

    if training:
        candidates = None
        if oversample_rare > 0:
            if rare_classes is None:
                rare_classes = rare_classes_from_counts(class_counts(masks, n_classes))
            bad = [c for c in rare_classes if not 0 <= c < n_classes]
            if bad:
                raise UserInputError(f"rare classes {bad} outside 0..{n_classes - 1}")
            candidates = rare_candidates(masks, list(rare_classes), seed)
        ds = _training_dataset(
            packed, len(images), patch_size, patches_per_image, augment,
            oversample_rare, candidates, seed, shard,
        )
        ds = ds.batch(batch_size)
    else:
        # cache the uint8 ids, not the K-channel float targets: 5 bytes per pixel
        ds = _validation_dataset(packed, patch_size, shard).batch(batch_size).cache()

    ds = ds.map(lambda x, m: (x, encode_targets(m, n_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)
