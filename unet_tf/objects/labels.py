"""Instance label images: the one set of helpers that check, renumber and connect them.

An instance label image is a 2-D integer array (H, W): 0 is background, every
other value one object; ids need not be consecutive. The other modules of
:mod:`unet_tf.objects`, :mod:`unet_tf.evaluation`, :mod:`unet_tf.tracking` and
:mod:`unet_tf.data.targets` take their checks, renumberings and neighbourhoods
from here, so "which id is which object after renumbering" is decided in one
place:

* :func:`renumber`: ids 1..N in the order of the ids (int32).
* :func:`renumber_if_sparse`: the same, only when the largest id is far above
  the number of objects (so per-id tables stay small); else unchanged.
* :func:`renumber_by_position`: ids 1..N in raster order of each object's first
  pixel (the order of ``scipy.ndimage.label``), and N.
* :func:`index_by_id`: the ids present, their areas and the image of their
  positions 1..N in that list (int64).
"""

from __future__ import annotations

from typing import Type

import numpy as np
from scipy import ndimage as ndi

from unet_tf.errors import UserInputError

# === Neighbourhoods ===


def structure(connectivity: int) -> np.ndarray:
    """3x3 bool neighbourhood for ``scipy.ndimage.label``: 4 (edges) or 8 (edges + corners).

    Raises:
        ValueError: any other ``connectivity``.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return ndi.generate_binary_structure(2, 1 if connectivity == 4 else 2)


# === Checks ===


def _negative_ids(labels: np.ndarray, name: str) -> str:
    return f"{name}: negative object id {labels.min()} (ids must be >= 0, 0 background)"


def check_labels(labels: np.ndarray, name: str, error: Type[Exception] = ValueError) -> np.ndarray:
    """``labels`` as an array, checked to be an instance label image (2-D, integer, ids >= 0).

    Args:
        labels: array-like, the label image.
        name: str, what to call it in the message (a parameter, a file, ``frame 3``).
        error: the exception raised (default ValueError; UserInputError for a user's files).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise error(f"{name}: expected a 2-D integer label image, got shape {labels.shape}, dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise error(_negative_ids(labels, name))
    return labels


def check_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """``mask`` (H, W) as bool (nonzero = object); ValueError naming ``name`` unless it is 2-D."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def as_label_image(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` as an integer label image, for scores: a bool (H, W) mask becomes its 8-connected components.

    Components are int32 ids 1..N in raster order of their first pixel (as
    :func:`unet_tf.objects.instances.label_components`); float ids that are
    whole numbers become int64; integer images pass unchanged.

    Raises:
        UserInputError: a negative or fractional id, naming ``name`` (e.g. ``true``) and the value.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        if labels.ndim != 2:
            return labels.astype(np.int32)
        return ndi.label(labels, structure=structure(8))[0].astype(np.int32, copy=False)
    if labels.size and labels.min() < 0:
        raise UserInputError(_negative_ids(labels, f"{name} label image"))
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise UserInputError(f"{name} label image: fractional ids in a {labels.dtype} array (ids must be integers)")
        return labels.astype(np.int64)
    return labels


# === Renumbering ===


def renumber(labels: np.ndarray) -> np.ndarray:
    """Ids renumbered 1..N (int32) in the order of the ids; 0 stays background."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(np.asarray(labels))[0].astype(np.int32, copy=False)


def renumber_if_sparse(labels: np.ndarray) -> np.ndarray:
    """:func:`renumber` when the largest id exceeds ``2 N + 1024`` (N objects), else ``labels`` unchanged.

    For helpers whose cost grows with the largest id (``scipy.ndimage.find_objects``).
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size and ids[-1] > 2 * ids.size + 1024:
        return np.searchsorted(np.concatenate([[0], ids]), labels).astype(np.int32)
    return labels


def renumber_by_position(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(ids renumbered 1..N (int32) in raster order of each object's first pixel, N); 0 stays background."""
    values, first = np.unique(labels.ravel(), return_index=True)
    keep = values > 0
    order = values[keep][np.argsort(first[keep])]
    lookup = np.zeros(int(values.max()) + 1 if values.size else 1, np.int32)
    lookup[order] = np.arange(1, order.size + 1)
    return lookup[labels], int(order.size)


def index_by_id(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids of the objects, sorted; their areas in px; index image: 0 background, i + 1 on ``ids[i]``).

    The index image is int64 (the ids renumbered 1..N in their order); ids up
    to 4 x the pixel count are counted without sorting.
    """
    if labels.size and labels.min() >= 0 and labels.max() <= 4 * labels.size:  # no sorting needed
        counts = np.bincount(labels.ravel())
        ids = np.flatnonzero(counts[1:]) + 1
        lookup = np.zeros(counts.size, dtype=np.int64)
        lookup[ids] = np.arange(1, ids.size + 1)
        return ids, counts[ids], lookup[labels]
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    index = inverse.reshape(labels.shape)
    if ids.size and ids[0] == 0:
        return ids[1:], counts[1:], index
    return ids, counts, index + 1
