"""The NumPy side of :mod:`unet_tf.data.pipeline`, run before any TensorFlow graph
is built: input checks, validation tiles, class statistics and rare-class
centre candidates. Importing it does not load TensorFlow.

:data:`IGNORE_ID` (255) is the class id of pixels that count in no loss term
and no metric; it is counted in no class and never chosen as a patch centre.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from unet_tf.data.targets import IGNORE_ID
from unet_tf.errors import UserInputError

MAX_CANDIDATES = 20_000  # rare-class centre candidates kept per class per image


def tile_origins(length: int, patch_size: int) -> np.ndarray:
    """Tile starts along one axis: step ``patch_size``, the last tile shifted to end
    at the border; ``[0]`` when ``length <= patch_size`` (the tile is reflect-padded)."""
    if length <= patch_size:
        return np.zeros(1, np.int64)
    starts = np.arange(0, length - patch_size, patch_size, dtype=np.int64)
    return np.append(starts, length - patch_size)


def tile_spans(length: int, patch_size: int) -> np.ndarray:
    """int64 ``[T, 2]`` ``(start, stop)`` per tile of :func:`tile_origins`, in tile
    coordinates: the pixels of the image that this tile is the first to cover.

    A tile owns ``[0, patch_size)`` except where it runs past the image (the
    reflect padding of a short axis) or where the previous tile already covered
    it (the last tile, shifted back to end at the border). The spans of all
    tiles cover every pixel ``0..length-1`` exactly once.
    """
    origins = tile_origins(length, patch_size)
    ends = np.minimum(origins + patch_size, length)  # last image pixel covered, + 1
    covered = np.concatenate([[0], ends[:-1]])  # pixels before this are an earlier tile's
    return np.stack([np.maximum(covered - origins, 0), ends - origins], axis=1).astype(np.int64)


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


def validation_spans(shapes: Sequence[tuple[int, int]], patch_size: int) -> np.ndarray:
    """int64 ``[T, 4]`` rows ``(row_start, row_stop, col_start, col_stop)``, one per
    tile of :func:`validation_plan` in the same order: the rectangle of the tile
    (tile coordinates) whose pixels count in validation (:func:`tile_spans` on
    each axis). Over all tiles each image pixel is counted exactly once: no
    overlap of the last tile, no reflect padding."""
    rows = [(*r, *c) for h, w in shapes for r in tile_spans(h, patch_size) for c in tile_spans(w, patch_size)]
    return np.asarray(rows, np.int64).reshape(-1, 4)


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


# === Which image each training patch comes from ===


def bright_background(images: Sequence[np.ndarray]) -> np.ndarray:
    """bool ``[N]``: the image's median is above the middle of its 2nd-98th
    percentile range, i.e. objects on a bright background (brightfield, stained
    tissue) rather than a dark one (fluorescence). Works on raw or normalized
    images alike."""
    out = []
    for im in images:
        lo, mid, hi = np.percentile(np.asarray(im, np.float32), (2, 50, 98))
        out.append(bool(hi > lo and mid > (lo + hi) / 2))
    return np.asarray(out, bool).reshape(-1)


def balanced_shares(groups: np.ndarray) -> np.ndarray:
    """float64 ``[N]`` patch share of each image: every image of a group of ``n``
    images gets ``1 / sqrt(n)``, so a group of 100 images gets 10, one of 25
    gets 5 (halfway, in log scale, between each image equally and each group
    equally)."""
    groups = np.asarray(groups).reshape(-1)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / np.sqrt(counts[inverse].astype(np.float64))


def patch_order(n_images: int, patches_per_image: int, shares: Sequence[float] | None = None) -> np.ndarray:
    """int64 ``[n_images * patches_per_image]``: the image of every training patch
    of a pass. Image ``i`` gets its share of the patches (largest remainder; at
    least one each), its patches spread evenly over the pass. Without
    ``shares``: ``0, 1, ..., n-1, 0, 1, ...`` (every image equally)."""
    total = n_images * patches_per_image
    if shares is None:
        return np.arange(total, dtype=np.int64) % n_images
    shares = np.asarray(shares, np.float64).reshape(-1)
    if shares.size != n_images or not np.all(np.isfinite(shares)) or np.any(shares <= 0):
        raise UserInputError(f"image shares: need {n_images} positive finite numbers, got {shares.tolist()[:8]}")
    ideal = 1 + shares / shares.sum() * (total - n_images)
    counts = np.floor(ideal).astype(np.int64)
    extra = np.argsort(counts - ideal, kind="stable")[: total - int(counts.sum())]
    counts[extra] += 1
    # patch j of image i sits at (j + 0.5) / count_i of the way through the pass
    position = np.concatenate([(np.arange(c) + 0.5) / c for c in counts])
    image = np.repeat(np.arange(n_images, dtype=np.int64), counts)
    return image[np.lexsort((image, position))]


# === Input checks ===


def check_settings(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    n_classes: int,
    patch_size: int,
    batch_size: int,
    patches_per_image: int,
    oversample_rare: float,
    shard: tuple[int, int] = (0, 1),
) -> None:
    """UserInputError naming the first bad count or setting."""
    if len(images) == 0:
        raise UserInputError("no images to build a dataset from")
    if len(images) != len(masks):
        raise UserInputError(f"{len(images)} images but {len(masks)} masks")
    if patch_size < 16:
        raise UserInputError(f"patch size must be at least 16, got {patch_size}")
    if not 2 <= n_classes <= IGNORE_ID:
        raise UserInputError(f"number of classes must be 2..{IGNORE_ID} (id {IGNORE_ID} means ignore), got {n_classes}")
    if batch_size < 1 or patches_per_image < 1:
        raise UserInputError(f"batch size and patches per image must be >= 1, got {batch_size}, {patches_per_image}")
    if not 0.0 <= oversample_rare <= 1.0:
        raise UserInputError(f"oversample_rare must be in [0, 1], got {oversample_rare}")
    if not 0 <= shard[0] < shard[1]:
        raise UserInputError(f"shard {shard[0]} of {shard[1]}: need 0 <= index < count")


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a


def check_pair(i: int, im: np.ndarray, m: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``i`` as 2-D float32 and its mask as uint8 (ids ``0..C-1`` or
    :data:`IGNORE_ID`), or a UserInputError naming the problem."""
    im, m = _as_2d(im), _as_2d(m)
    if im.ndim != 2 or im.size == 0:
        raise UserInputError(f"image {i}: expected a 2-D grayscale array, got shape {im.shape}")
    if m.dtype != bool and not np.issubdtype(m.dtype, np.integer):
        raise UserInputError(f"mask {i}: expected integer class ids, got {m.dtype}")
    if im.shape != m.shape:
        raise UserInputError(f"image {i}: shape {im.shape} but its mask has shape {m.shape}")
    bad_ids = (m < 0) | ((m >= n_classes) & (m != IGNORE_ID))
    if bad_ids.any():
        bad = np.unique(m[bad_ids])[:5]
        raise UserInputError(
            f"mask {i}: class ids {bad.tolist()} outside 0..{n_classes - 1} (and {IGNORE_ID} = ignore)"
        )
    return im.astype(np.float32, copy=False), m.astype(np.uint8, copy=False)


def check_weights(weights: Sequence[np.ndarray | None], images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One finite, non-negative float32 map per image (None entries: all 1), or a
    UserInputError naming the map."""
    if len(weights) != len(images):
        raise UserInputError(f"{len(images)} images but {len(weights)} weight maps")
    out = []
    for i, (w, im) in enumerate(zip(weights, images)):
        w = np.ones(im.shape, np.float32) if w is None else _as_2d(w).astype(np.float32, copy=False)
        if w.shape != im.shape:
            raise UserInputError(f"weight map {i}: shape {w.shape} but its image has shape {im.shape}")
        if not np.all(np.isfinite(w)) or w.min() < 0:
            raise UserInputError(f"weight map {i}: weights must be finite and >= 0, min {np.nanmin(w)}")
        out.append(w)
    return out


def check_arrays(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    weights: Sequence[np.ndarray | None] | None,
    n_classes: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """Images as 2-D float32, masks as uint8 and weight maps as float32 (None:
    none), each checked by :func:`check_pair` / :func:`check_weights`."""
    pairs = [check_pair(i, im, m, n_classes) for i, (im, m) in enumerate(zip(images, masks))]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    return images, masks, None if weights is None else check_weights(weights, images)
