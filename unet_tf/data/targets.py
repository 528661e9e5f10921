"""Instance label images -> training targets: 3-class map, border weights, ignore mask.

Pure NumPy / SciPy (no TensorFlow), run once per image at load time so that the
patch sampler and the augmentation carry the results like any other mask.

* :func:`instance_target`: background 0 / interior 1 / boundary 2 (uint8). The
  boundary class is what lets a network separate touching objects: the pixels
  where two objects meet are boundary, never interior, so the interior
  components of a prediction are one per object (the seeds of
  :func:`unet_tf.objects.instances.instances_from_probabilities`).
* :func:`border_weights`: the separation term of Ronneberger et al. 2015, eq. 2.
* :func:`ignore_from_markers`: for sparsely annotated Cell Tracking Challenge
  SEG frames, the regions around nuclei that have a TRA marker but no SEG
  label; they are set to :data:`IGNORE_ID` and count in no loss or metric.
  :func:`marker_margin` sizes those regions once for the whole data set.
* :func:`ignore_stats` / :func:`format_ignore_stats`: counts for the run log.
* :func:`object_areas` / :func:`min_object_size`: the smallest object a model
  of these training objects should report (stored in the model file, the
  default ``min_size`` of prediction).

Instance label images are 2-D non-negative integer arrays (H, W): 0 is
background, every other value one object (ids need not be consecutive),
checked and renumbered by the helpers of :mod:`unet_tf.objects.labels`.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy import ndimage as ndi

from unet_tf.objects.labels import check_labels, renumber_if_sparse
from unet_tf.objects.scale import instance_areas, median_diameter

IGNORE_ID = 255
"""Class id meaning "ignore this pixel" in uint8 class-id masks and targets."""

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
MARKER_MARGIN_FACTOR = 0.8
"""Default growth of an unannotated TRA marker, in units of the median equivalent radius of the nuclei."""
MIN_SIZE_PERCENTILE = 5.0
MIN_SIZE_FRACTION = 0.25
"""Default minimum object size: this fraction of that percentile of the training object areas."""


# === 3-class target ===


def instance_target(instances: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """Background / interior / boundary target of an instance label image.

    A pixel of object ``k`` is *boundary* when some pixel within
    ``boundary_width`` px of it in the chessboard metric (the
    ``(2w+1) x (2w+1)`` square around it) holds another value: background or
    another object. So a lone square gets a ring ``boundary_width`` px wide,
    and two touching objects each get a band of that width along their contact
    line (2 * width px in all). Pixels outside the image do not count (the
    edge is replicated), so an object cut by the image edge has no boundary
    there. Objects thinner than ``2 * boundary_width + 1`` px are boundary
    throughout. Two separable running min / max filters: O(H W), whatever the
    number of objects or the width.

    Args:
        instances: (H, W) non-negative integer instance ids, 0 background.
        boundary_width: boundary width in px, >= 1. Default 2.

    Returns:
        uint8 (H, W): 0 background, 1 interior, 2 boundary.
    """
    instances = check_labels(instances, "instances")
    if int(boundary_width) != boundary_width or boundary_width < 1:
        raise ValueError(f"boundary_width must be an integer >= 1, got {boundary_width!r}")
    size = 2 * int(boundary_width) + 1
    if instances.size and instances.max() < 2**16:
        instances = instances.astype(np.uint16, copy=False)  # less memory traffic: ~1.6x faster
    # The window holds the pixel itself, so low <= id <= high: interior iff low == high.
    low = ndi.minimum_filter(instances, size=size, mode="nearest")
    high = ndi.maximum_filter(instances, size=size, mode="nearest")
    target = np.zeros(instances.shape, dtype=np.uint8)
    inside = instances > 0
    target[inside] = INTERIOR
    target[inside & (low != high)] = BOUNDARY
    return target


def with_ignore(target: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    """Copy of uint8 class ids ``target`` (H, W) with ``ignore`` (bool, H, W) pixels set to IGNORE_ID."""
    out = np.array(target, dtype=np.uint8, copy=True)
    if ignore is not None:
        if ignore.shape != out.shape:
            raise ValueError(f"ignore has shape {ignore.shape}, target {out.shape}")
        out[np.asarray(ignore, dtype=bool)] = IGNORE_ID
    return out


# === Separation-border weights ===


def nearest_two_distances(instances: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d1 <= d2 (float32, H, W) to the nearest and second-nearest object.

    The distance of a pixel to object ``k`` is the Euclidean distance between
    pixel centres to the nearest pixel of ``k`` (0 on ``k`` itself). Each
    object is handled in its bounding box grown by ``cutoff`` px, where its
    distance map is exact; a distance above ``cutoff`` may be reported as
    ``inf`` (objects farther away are not looked at).
    """
    instances = renumber_if_sparse(instances)
    d1 = np.full(instances.shape, np.inf, dtype=np.float32)
    d2 = np.full(instances.shape, np.inf, dtype=np.float32)
    m = int(math.ceil(cutoff))
    height, width = instances.shape
    for k, box in enumerate(ndi.find_objects(instances), start=1):
        if box is None:
            continue
        ys, xs = box
        sl = (
            slice(max(ys.start - m, 0), min(ys.stop + m, height)),
            slice(max(xs.start - m, 0), min(xs.stop + m, width)),
        )
        dist = ndi.distance_transform_edt(instances[sl] != k).astype(np.float32)
        b1, b2 = d1[sl], d2[sl]
        np.minimum(b2, np.maximum(b1, dist), out=b2)
        np.minimum(b1, dist, out=b1)
    return d1, d2


def border_weights(
    instances: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    *,
    background_only: bool = False,
    cutoff: float | None = None,
) -> np.ndarray:
    """Per-pixel loss weight ``1 + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` (Ronneberger et al. 2015, eq. 2).

    ``d1``, ``d2``: Euclidean distances (px, between pixel centres) to the
    nearest and second-nearest object (:func:`nearest_two_distances`). The
    paper's class-balance term ``w_c`` is 1 here: the loss balances classes.

    Inside objects: by default the term is computed everywhere, as the paper's
    formula is written: on a pixel of object ``k`` the distance to ``k`` is 0,
    so ``d1 = 0`` and ``d2`` is the distance to the nearest *other* object.
    Widely used re-implementations multiply the term by the background mask
    (``background_only=True``); in the paper's data cells were separated by
    background gaps, so only the gap pixels mattered. With the 3-class target
    of :func:`instance_target`, touching objects meet without any background
    between them: the contact band is boundary-class *object* pixels, and a
    background-only weight would put no weight there, where the separation is
    learnt. Deep inside an isolated object the term is below
    ``w0 * exp(-d2^2 / (2 sigma^2))``, i.e. negligible.

    Fewer than two objects: no separation term, all ones. ``w0 == 0``: all ones.

    Cut-off: each object is looked at only within ``cutoff`` px of its bounding
    box (default ``4 * sigma``), so the work is the sum of the grown boxes, not
    objects x pixels. Where the true ``d2`` exceeds ``cutoff`` the term is set to
    0; its true value there is below ``w0 * exp(-cutoff^2 / (2 sigma^2))``
    (``w0 * e^-8 = 3.4e-4 * w0`` at the default), the only error. Elsewhere the
    value is exact.

    Args:
        instances: (H, W) non-negative integer instance ids, 0 background.
        w0: weight of the separation term (paper: 10). Default 10.
        sigma: its width in px (paper: 5). Default 5.
        background_only: zero the term on object pixels. Default False.
        cutoff: distance in px beyond which objects are ignored; default
            ``4 * sigma``.

    Returns:
        float32 (H, W), values in ``[1, 1 + w0]``.
    """
    instances = check_labels(instances, "instances")
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"need w0 >= 0 and sigma > 0, got w0={w0}, sigma={sigma}")
    weights = np.ones(instances.shape, dtype=np.float32)
    if w0 == 0 or np.unique(instances[instances > 0]).size < 2:
        return weights
    cutoff = 4.0 * sigma if cutoff is None else float(cutoff)
    d1, d2 = nearest_two_distances(instances, cutoff)
    near = np.isfinite(d2)
    if background_only:
        near &= instances == 0
    s = d1[near] + d2[near]
    weights[near] += np.float32(w0) * np.exp(-(s * s) / np.float32(2.0 * sigma * sigma))
    return weights


# === Ignore regions for sparse annotation (Cell Tracking Challenge) ===


def median_equivalent_radius(instances: np.ndarray) -> float:
    """Median equivalent radius ``sqrt(area / pi)`` (px) of the objects of ``instances``; NaN if none.

    The radius of the disc of each object's area (an area in length units),
    not :func:`unet_tf.objects.instances.split_touching`'s median inscribed
    radius (the height of the distance map's maxima), which is smaller for
    any shape but a disc.
    """
    diameter = median_diameter(instance_areas(check_labels(instances, "instances")))
    return math.nan if diameter is None else diameter / 2


def marker_margin(areas: np.ndarray, factor: float = MARKER_MARGIN_FACTOR) -> float:
    """Growth (px) of unannotated markers for a whole data set; NaN when there are no objects.

    ``factor`` x the median equivalent radius ``sqrt(area / pi)`` of objects
    of ``areas`` (:func:`object_areas` of every annotated frame). Why the set,
    not each frame: most Fluo-N2DH-GOWT1 SEG frames annotate 1-3 nuclei, and
    their per-frame margins range over 10.9-29.1 px around the set's 24.4 px;
    the small ones leave part of the unannotated nuclei trained as background.
    """
    diameter = median_diameter(areas)
    return math.nan if diameter is None else float(factor * diameter / 2)


def unannotated_markers(seg: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Ids of the marker objects that the annotation leaves out (sorted int64 array).

    A marker counts as annotated when at least half of its pixels lie on SEG
    objects (in the GOWT1 ground truth an annotated nucleus covers 80-100 % of
    its marker, an unannotated one 0 %).
    """
    ids, counts = np.unique(markers[markers > 0], return_counts=True)
    covered = np.bincount(np.searchsorted(ids, markers[(markers > 0) & (seg > 0)]), minlength=ids.size)
    return ids[2 * covered < counts].astype(np.int64)


def ignore_from_markers(seg: np.ndarray, markers: np.ndarray, margin: float | None = None) -> np.ndarray:
    """Ignore mask of a sparsely annotated frame: the nuclei with a marker but no label.

    Every marker object of ``markers`` that the SEG annotation leaves out
    (:func:`unannotated_markers`) is grown by ``margin`` px (Euclidean) and
    the union, minus the pixels of annotated objects, is returned. Fully
    annotated frames give an all-False mask.

    Why the marker grown by a margin, not a disc around its centre: the marker
    follows the nucleus's shape (elongated nuclei have elongated markers), but
    it is smaller than the nucleus and often off-centre. Measured on the 265
    annotated GOWT1 nuclei (both sequences), each treated as if unannotated:
    the marker grown by 0.75 x the frame's median equivalent radius misses 0.9 % of the
    nucleus pixels on average and ignores 1.2 x the nucleus area of
    background besides; a disc of 1.5 x that radius around the marker's
    centre misses 0.8 % for 1.3 x; the marker grown by 0.85 x misses 0.55 %
    for 1.5 x. The default factor 0.8 misses 0.7 % for 1.3 x (3.8 % of the
    nuclei lose more than 5 % of their pixels). Erring on the large side is
    deliberate: a missed nucleus pixel is trained as background (harmful),
    an extra ignored background pixel only goes unused. An unannotated
    marker is one less than half covered by SEG objects.

    Args:
        seg: (H, W) integer SEG instance labels (annotated objects), 0 elsewhere.
        markers: (H, W) integer TRA markers, one id per object, 0 elsewhere.
        margin: growth in px; training passes :func:`marker_margin` of
            every annotated object of the data set. Default (None):
            :data:`MARKER_MARGIN_FACTOR` (0.8) x :func:`median_equivalent_radius` of
            ``seg`` (of ``markers`` when ``seg`` is empty), which a frame with
            one or two annotated nuclei makes noisy.

    Returns:
        bool (H, W), True where the pixel is to be ignored.
    """
    seg = check_labels(seg, "seg")
    markers = check_labels(markers, "markers")
    if seg.shape != markers.shape:
        raise ValueError(f"seg has shape {seg.shape} but markers {markers.shape}")
    missing = unannotated_markers(seg, markers)
    if missing.size == 0:
        return np.zeros(seg.shape, dtype=bool)
    if margin is None:
        radius = median_equivalent_radius(seg if seg.any() else markers)
        margin = MARKER_MARGIN_FACTOR * radius
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    region = np.isin(markers, missing)
    if margin > 0:
        region = ndi.distance_transform_edt(~region) <= margin
    return region & (seg == 0)


def ignore_stats(ignores: Iterable[np.ndarray]) -> dict[str, int]:
    """Counts for the run log over the ignore masks (bool, H, W) of a data set's frames.

    Returns:
        ``frames``, ``full_frames`` (nothing ignored), ``partial_frames``,
        ``ignored_pixels``, ``pixels`` (all pixels of all frames).
    """
    stats = {"frames": 0, "full_frames": 0, "partial_frames": 0, "ignored_pixels": 0, "pixels": 0}
    for ignore in ignores:
        n = int(np.count_nonzero(ignore))
        stats["frames"] += 1
        stats["full_frames" if n == 0 else "partial_frames"] += 1
        stats["ignored_pixels"] += n
        stats["pixels"] += int(np.size(ignore))
    return stats


def format_ignore_stats(stats: dict[str, int]) -> str:
    """One line, e.g. ``30 annotated frames: 4 full, 26 partial; 1.2 % of pixels ignored (377,487 px)``."""
    share = 100.0 * stats["ignored_pixels"] / stats["pixels"] if stats["pixels"] else 0.0
    return (
        f"{stats['frames']} annotated frames: {stats['full_frames']} full, "
        f"{stats['partial_frames']} partial; {share:.1f} % of pixels ignored "
        f"({stats['ignored_pixels']:,} px)"
    )


# === The smallest object worth reporting ===


def object_areas(instance_images: Iterable[np.ndarray]) -> np.ndarray:
    """Pixel areas (int64, one per object) of every object of every instance label image."""
    areas = [instance_areas(x) for x in instance_images]
    return np.concatenate(areas) if areas else np.zeros(0, np.int64)


def min_object_size(
    areas: np.ndarray, percentile: float = MIN_SIZE_PERCENTILE, fraction: float = MIN_SIZE_FRACTION
) -> int:
    """Smallest object (px) worth reporting: ``fraction`` x the ``percentile``-th training object area.

    Why a low percentile: the smallest training objects are real (small
    nuclei, nuclei cut by the image edge), but the very smallest few may be
    slivers at the edge, so the minimum itself is noisy; the 5th percentile
    is a small *typical* object. Why a quarter of it: a prediction a quarter
    the size of a small real object is a fragment, not an object (its
    equivalent radius is half that object's), while a real object that the
    network shrinks by a boundary rim of a few px still passes. On
    Fluo-N2DH-GOWT1 sequence 01 (144 nuclei, 579-5306 px, 5th percentile
    2162 px) this gives 541 px.

    Args:
        areas: object areas in px (:func:`object_areas`).
        percentile: 0-100. Default :data:`MIN_SIZE_PERCENTILE` (5).
        fraction: > 0. Default :data:`MIN_SIZE_FRACTION` (0.25).

    Returns:
        int px (>= 1), or 0 when there are no objects.
    """
    areas = np.asarray(areas)
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    if fraction <= 0:
        raise ValueError(f"fraction must be positive, got {fraction!r}")
    if areas.size == 0:
        return 0
    return max(1, int(round(fraction * float(np.percentile(areas, percentile)))))
