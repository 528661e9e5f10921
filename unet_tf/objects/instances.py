"""Probabilities or class masks -> instance label images (one id per object).

Three ways to count objects, all on whole-image arrays (after the blended,
tile-free prediction, so no object is cut at a tile edge):

* :func:`instances_from_probabilities`: for a model trained on the 3-class
  instance target (background / interior / boundary, see
  :mod:`unet_tf.data.targets`): seeds = components of the interior, grown by a
  marker-controlled watershed over the foreground.
* :func:`split_touching`: for a model trained on semantic masks: one class's
  binary mask split at its necks by a distance-transform watershed.
* :func:`label_components`: plain connected components (touching objects stay
  one).

The watershed is scikit-image's ``segmentation.watershed`` (priority-queue
flooding in C, markers and mask built in); the maxima of the distance map are
``morphology.h_maxima``, which treats a plateau or a ridge as one maximum.
Hand-written Python versions of either would be slower and less tested.

Every function returns int32 (H, W) labels, 0 background, objects numbered
1..N (for connected components: in raster order of their first pixel;
after a watershed: in that order of their seeds). Hole filling and small-object
removal are exposed as :func:`fill_label_holes` and :func:`remove_small`;
renumbering, checks and neighbourhoods come from :mod:`unet_tf.objects.labels`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage as ndi

from unet_tf.objects.labels import check_mask, renumber, structure

SPLIT_H_FACTOR = 0.15
SPLIT_DISTANCE_FACTOR = 0.5
WEAK_SEED_FRACTION = 0.25
"""A seed smaller than this fraction of ``min_size`` px is weak: too little interior to be an object's."""


# === Cleaning label images ===


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Copy of ``labels`` with objects of fewer than ``min_size`` px set to 0 (ids unchanged)."""
    out = np.array(labels, copy=True)
    if min_size > 1 and out.size:
        if 0 <= out.min() and out.max() <= 4 * out.size:  # compact ids: count without sorting
            counts = np.bincount(out.ravel())
            small = np.flatnonzero(counts < min_size)
        else:
            ids, counts = np.unique(out[out > 0], return_counts=True)
            small = ids[counts < min_size]
        small = small[small > 0]
        if small.size:
            out[np.isin(out, small)] = 0
    return out


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Copy of ``labels`` with every hole of an object filled with that object's id.

    A hole is a 4-connected component of background that does not touch the
    image edge and whose neighbours all belong to ONE object (as
    ``scipy.ndimage.binary_fill_holes`` per object). A background pocket
    enclosed by several touching objects stays background; other objects are
    never overwritten. One labelling of the background, then work only in the
    bounding box of each enclosed pocket.
    """
    labels = np.asarray(labels)
    out = labels.copy()
    pockets, n = ndi.label(labels == 0)
    if n == 0:
        return out
    enclosed = np.ones(n + 1, dtype=bool)
    enclosed[np.concatenate([pockets[0], pockets[-1], pockets[:, 0], pockets[:, -1]])] = False
    cross = structure(4)
    for i, box in enumerate(ndi.find_objects(pockets), start=1):
        if box is None or not enclosed[i]:
            continue
        grown = tuple(slice(sl.start - 1, sl.stop + 1) for sl in box)  # inside: no edge contact
        pocket = pockets[grown] == i
        owners = np.unique(labels[grown][ndi.binary_dilation(pocket, cross) & ~pocket])
        if owners.size == 1:
            out[grown][pocket] = owners[0]
    return out


def _add_unseeded(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``labels`` plus, as new ids, the 8-connected parts of ``mask`` that no seed reached."""
    rest, n_rest = ndi.label(mask & (labels == 0), structure=structure(8))
    if n_rest == 0:
        return labels
    labels = labels.astype(np.int64)
    labels[rest > 0] = rest[rest > 0] + labels.max()
    return labels


def _finish(labels: np.ndarray, min_size: int, fill_holes: bool) -> np.ndarray:
    """Holes filled, objects under ``min_size`` dropped, then the holes they leave inside one object filled."""
    if fill_holes:
        labels = fill_label_holes(labels)
    kept = remove_small(labels, min_size)
    if fill_holes and np.count_nonzero(kept) != np.count_nonzero(labels):
        kept = fill_label_holes(kept)  # a fragment dropped inside an object is that object's
    return renumber(kept)


# === Connected components ===


def label_components(mask: np.ndarray, min_size: int = 0, connectivity: int = 8) -> np.ndarray:
    """Connected components of a binary mask as int32 labels (H, W).

    Args:
        mask: (H, W) bool (or anything where nonzero = object).
        min_size: components of fewer pixels are dropped. Default 0.
        connectivity: 8 (corner-touching pixels connect, as in
            :func:`unet_tf.objects.morphometry.measure_objects`) or 4. Default 8.
    """
    mask = check_mask(mask, "mask")
    labels, _ = ndi.label(mask, structure=structure(connectivity))
    return renumber(remove_small(labels, min_size))


# === 3-class probabilities -> instances ===


def _contact(labels: np.ndarray, i: int, box: tuple, boundary: np.ndarray) -> tuple[float, float] | None:
    """Where object ``i`` (in ``box``) touches others: (mean ``boundary`` probability on both sides of the
    contact, largest fraction of the object's outer rim held by ONE neighbour); None if it touches none."""
    box = tuple(slice(max(sl.start - 2, 0), sl.stop + 2) for sl in box)
    own, square = labels[box] == i, np.ones((3, 3), bool)
    rim = ndi.binary_dilation(own, square) & ~own
    outside = rim & (labels[box] > 0)
    if not outside.any():
        return None
    inside = ndi.binary_dilation(outside, square) & own
    share = np.bincount(labels[box][outside]).max() / np.count_nonzero(rim)
    return float(boundary[box][outside | inside].mean()), float(share)


def _settle_weak_seeds(labels: np.ndarray, weak: np.ndarray, boundary: np.ndarray, min_size: int) -> tuple[list, list]:
    """(absorbed, dropped): the weak seeds whose regions are fragments of a neighbour, or debris beside one.

    Weak means less interior than any object of ``min_size`` px has. Such a
    seed's region (in ``labels``, the first flood) is a fragment when it
    touches another object and either is under ``min_size`` px or has most of
    its outer rim on ONE neighbour (a bulge of that neighbour). A fragment
    joins its neighbours (:func:`_flood` redoes the flood without its seed)
    where the network sees no boundary between them (mean boundary
    probability <= 0.5 along the contact). Where it does, a fragment under
    ``min_size`` px is dropped (a halo or debris, not glued onto the
    neighbour); one of ``min_size`` px or more stays: an object that large
    never vanishes, however little interior it has. A region that touches
    nothing stays too (``min_size`` judges it).
    """
    absorbed, dropped = [], []
    boxes = ndi.find_objects(labels) if weak.size else []  # one pass for all objects
    sizes = np.bincount(labels.ravel()) if weak.size else np.zeros(0, np.int64)
    for i in weak:
        if i > len(boxes) or boxes[i - 1] is None:
            continue
        contact = _contact(labels, int(i), boxes[i - 1], boundary)
        if contact is None:
            continue
        small, bulge = sizes[i] < min_size, contact[1] > 0.5
        if contact[0] <= 0.5 and (small or bulge):
            absorbed.append(int(i))
        elif contact[0] > 0.5 and small:
            dropped.append(int(i))
    return absorbed, dropped


def _flood(
    interior: np.ndarray,
    boundary: np.ndarray,
    seeds: np.ndarray,
    foreground: np.ndarray,
    min_size: int,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, foreground): the seeds' watershed; weak seeds (under ``fraction * min_size`` px) settled and
    the flood redone without them."""
    from skimage.segmentation import watershed

    labels = watershed(1.0 - interior, markers=seeds, mask=foreground)
    sizes = np.bincount(seeds.ravel())
    weak = np.flatnonzero((sizes > 0) & (sizes < fraction * min_size))
    absorbed, dropped = _settle_weak_seeds(labels, weak[weak > 0], boundary, min_size)
    if absorbed or dropped:
        foreground = foreground & ~np.isin(labels, dropped)
        seeds = np.where(np.isin(seeds, absorbed + dropped), 0, seeds)
        labels = watershed(1.0 - interior, markers=seeds, mask=foreground)
    return labels, foreground


def instances_from_probabilities(
    prob: np.ndarray,
    *,
    interior_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_seed_size: int = 4,
    min_size: int = 0,
    fill_holes: bool = True,
    weak_seed_fraction: float = WEAK_SEED_FRACTION,
) -> np.ndarray:
    """Instances from background / interior / boundary probabilities by a seeded watershed.

    1. Foreground: ``interior + boundary > foreground_threshold``.
    2. Seeds: 4-connected components of ``interior > interior_threshold``
       inside the foreground, those smaller than ``min_seed_size`` px dropped
       (specks of interior would split an object).
    3. Each seed grows over the foreground by a watershed on ``1 - interior``
       (skimage ``segmentation.watershed``): pixels join the seed they reach
       first while flooding from high interior probability to low, so two
       objects meet where the boundary between them is strongest.
    4. Weak seeds (under ``weak_seed_fraction * min_size`` px) whose region
       is a fragment: it touches another object and is under ``min_size`` px
       or has most of its rim on one neighbour. The fragment joins its
       neighbours (the flood is redone without the seed) where the boundary
       probability along the contact is at most 0.5; where it is higher, a
       fragment under ``min_size`` px is dropped. A region of ``min_size``
       px or more is never dropped (:func:`_settle_weak_seeds`).
    5. A foreground component that holds no seed (an object too small or too
       thin to have an interior) becomes an object of its own.
    6. Holes filled (:func:`fill_label_holes`), objects under ``min_size``
       px dropped (a fragment enclosed by one object becomes part of it), ids
       renumbered 1..N.

    Args:
        prob: float (H, W, 3) class probabilities (softmax): background,
            interior, boundary.
        interior_threshold: interior probability above which a pixel is seed.
            Default 0.5.
        foreground_threshold: interior + boundary probability above which a
            pixel belongs to some object. Default 0.5.
        min_seed_size: smallest seed in px. Default 4.
        min_size: smallest object in px (after hole filling). Default 0
            (a model's own value: ``ModelInfo.min_size``).
        fill_holes: fill holes inside objects. Default True.
        weak_seed_fraction: step 4's fraction of ``min_size``. Default
            :data:`WEAK_SEED_FRACTION` (0.25: an object of ``min_size`` px
            with a 2 px boundary rim has well over that much interior).

    Returns:
        int32 (H, W) labels, 0 background, 1..N objects.
    """
    prob = np.asarray(prob)
    if prob.ndim != 3 or prob.shape[-1] != 3:
        raise ValueError(f"prob must be (H, W, 3) background/interior/boundary, got shape {prob.shape}")
    interior = prob[..., 1].astype(np.float32)
    foreground = interior + prob[..., 2] > foreground_threshold
    seeds, _ = ndi.label((interior > interior_threshold) & foreground)
    seeds = remove_small(seeds, min_seed_size)
    labels, foreground = _flood(interior, prob[..., 2], seeds, foreground, min_size, weak_seed_fraction)
    return _finish(_add_unseeded(labels, foreground), min_size, fill_holes)


# === Semantic mask -> instances ===


def _component_peaks(dist: np.ndarray, components: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """h-maxima of ``dist`` per component: (markers (H, W), owner component (n,), centres (n, 2)).

    Each component is handled in its bounding box: the same maxima as one
    ``h_maxima`` call on the whole image (a global sort), ~20x faster on a
    4096 px image of 500 objects.
    """
    from skimage.morphology import h_maxima

    markers = np.zeros(dist.shape, dtype=np.int32)
    owners, centres = [], []
    for k, box in enumerate(ndi.find_objects(components), start=1):
        own = components[box] == k
        peaks, n = ndi.label(h_maxima(np.where(own, dist[box], 0), h).astype(bool) & own, structure=structure(8))
        if n == 0:
            continue
        markers[box][peaks > 0] = peaks[peaks > 0] + len(owners)
        centre = ndi.center_of_mass(peaks > 0, peaks, np.arange(1, n + 1))
        centres.extend(np.asarray(centre).reshape(n, 2) + [box[0].start, box[1].start])
        owners.extend([k] * n)
    return markers, np.array(owners, dtype=np.int64), np.array(centres).reshape(-1, 2)


def _split_seeds(dist: np.ndarray, components: np.ndarray, h: float, min_distance: float) -> np.ndarray:
    """Markers: h-maxima of ``dist``; those of one component closer than ``min_distance`` share a label."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    markers, owner, centres = _component_peaks(dist, components, h)
    n = owner.size
    if n < 2 or min_distance <= 0:
        return markers
    pairs = cKDTree(centres).query_pairs(min_distance, output_type="ndarray")
    pairs = pairs[owner[pairs[:, 0]] == owner[pairs[:, 1]]]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    return np.concatenate([[0], group + 1])[markers]


def inscribed_radii(dist: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Heights of the distance map's maxima (depth >= 1 px), one per maximum of every component of
    ``components``: the inscribed radii that :func:`median_inscribed_radius` takes the median of. Each
    component's maxima depend only on its own pixels' distances, so the radii of an image are those of its
    components wherever they are measured (blockwise prediction gathers them block by block)."""
    peaks, owner, _ = _component_peaks(dist, components, 1.0)
    if owner.size == 0:
        return np.zeros(0, dist.dtype)
    return np.asarray(ndi.maximum(dist, peaks, index=np.arange(1, owner.size + 1)))


def median_inscribed_radius(radii: np.ndarray, dist_max: float) -> float:
    """Median of the inscribed ``radii`` of every object (:func:`inscribed_radii`); ``dist_max`` (the distance
    map's maximum) when there is none.

    Each maximum is the radius of the largest disc inscribed in its object
    (distance from its centre to the background), so this is the objects'
    median inscribed radius: for a disc its radius, for other shapes less
    than the equivalent radius ``sqrt(area / pi)`` of
    :func:`unet_tf.data.targets.median_equivalent_radius`.
    """
    radii = np.asarray(radii)
    return float(np.median(radii)) if radii.size else float(dist_max)


def split_touching(
    mask: np.ndarray,
    *,
    h: float | None = None,
    min_distance: float | None = None,
    min_size: int = 0,
    fill_holes: bool = False,
    radius: float | None = None,
) -> np.ndarray:
    """Touching objects of one class split by a distance-transform watershed.

    The Euclidean distance to the background peaks once near the centre of
    each roundish object and dips at the neck where two objects touch.
    Seeds are the regional maxima of the distance whose height above the
    saddle to any higher maximum is at least ``h`` (``h_maxima``: a plateau
    or the ridge of an ellipse or a rectangle is one maximum, so one convex
    object stays whole); seeds of one connected component whose centres are
    closer than ``min_distance`` px are merged into one marker.
    Each seed floods ``-distance`` within the mask (skimage watershed).

    Defaults scale with the median inscribed radius ``r`` of the objects (the
    median height of the distance map's maxima of depth >= 1 px, so every
    object of a packed cluster counts, not only the cluster's largest): ``h = 0.15 r``
    (at least 1 px) and ``min_distance = 0.5 r``. Two discs of radius ``r``
    are then split when the neck between them is narrower than about
    ``0.85 r`` on each side of the contact line, i.e. while their centres are
    more than ~1.05 r apart.

    Args:
        mask: (H, W) bool mask of one class.
        h: least depth (px of distance) of the neck between two seeds.
        min_distance: seeds closer than this (px) become one seed.
        min_size: objects under this many px are dropped. Default 0.
        fill_holes: fill holes inside objects first. Default False.
        radius: the median inscribed radius ``r`` the defaults scale with; None (default): that of ``mask``.
            Given, a part of a larger image is split as the whole image is (blockwise prediction).

    Returns:
        int32 (H, W) labels, 0 background, 1..N objects.
    """
    from skimage.segmentation import watershed

    mask = check_mask(mask, "mask")
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    components, _ = ndi.label(mask, structure=structure(8))
    if radius is None:
        radius = median_inscribed_radius(inscribed_radii(dist, components), dist.max())
    h = max(1.0, SPLIT_H_FACTOR * radius) if h is None else float(h)
    min_distance = SPLIT_DISTANCE_FACTOR * radius if min_distance is None else float(min_distance)
    markers = _split_seeds(dist, components, h, min_distance)
    labels = watershed(-dist, markers=markers, mask=mask, connectivity=2)
    return _finish(_add_unseeded(labels, mask), min_size, False)


# === The prediction step ===


def instances_for(
    prob: np.ndarray | None,
    ids: np.ndarray,
    target: str,
    *,
    threshold: float = 0.5,
    min_size: int = 0,
    split: bool = False,
    radii: Mapping[int, float] | None = None,
    foreground_threshold: float = 0.5,
) -> np.ndarray | None:
    """The instance labels (int32 (H, W), ids unique over classes) that prediction reports, or None.

    ``target == "instances"``: seeded watershed of the background / interior /
    boundary probabilities (:func:`instances_from_probabilities`, interior
    seeds above ``threshold``, objects where interior + boundary is above
    ``foreground_threshold``). A semantic model with ``split``: every
    foreground class's mask split into touching objects
    (:func:`split_touching`), numbered on after the previous class; ``radii``: class id -> the median
    inscribed radius to split it with (default: each class's own in ``ids``). Otherwise None (objects are
    connected components, counted by the object table).
    """
    if target == "instances":
        return instances_from_probabilities(
            prob, interior_threshold=threshold, foreground_threshold=foreground_threshold, min_size=min_size
        )
    if not split:
        return None
    out = np.zeros(ids.shape, np.int32)
    for c in np.unique(ids[ids > 0]):
        radius = None if radii is None else radii.get(int(c))
        labels = split_touching(ids == c, min_size=min_size, radius=radius)
        inside = labels > 0
        out[inside] = labels[inside] + out.max()
    return out
