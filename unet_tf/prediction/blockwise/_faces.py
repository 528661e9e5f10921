"""Objects cut by block faces: each block's pieces of them, and the pieces joined across faces.

A block labels each foreground class of its interior, as the whole-image object
table does: connected components (8-connected, as ``measure_objects``), or
with instance ids one label per (class, id) (``measure_objects(...,
instances=)``). A piece that may continue in another block is *open*: a
component touching an interior edge that is a block face (not the image
border), or an instance whose final id occurs in more than one block. Every
other piece is a whole object, which the block handles alone. Open pieces are
joined on the client (:func:`join`): components whose pixels are 8-neighbours
of the same class across a face, through the graph of
:func:`._merge.final_ids`; instances by their id. A joined object is then
handled once, from a crop of the output around the union of its pieces' boxes
(:func:`object_crop`): it lies whole in that box, so the crop gives exactly
the object of the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unet_tf.objects.labels import structure

from ._merge import final_ids
from ._plan import Block, Box


@dataclass(frozen=True)
class Piece:
    """An object's piece in one block interior: ``key`` its local component id (components, unique over the
    block's classes) or final instance id; ``first`` the raster index y * W + x of its first pixel."""

    block: int
    cls: int
    key: int
    first: int
    box: Box


@dataclass(frozen=True)
class Joined:
    """A whole object from its pieces: class, instance id (None: a component), first pixel, box."""

    cls: int
    key: int | None
    first: int
    box: Box


def class_labels(ids: np.ndarray, cls: int, instances: np.ndarray | None) -> tuple[np.ndarray, int, np.ndarray]:
    """(labels int32 1..n, n, keys (n + 1,) int64: the instance id of each label, or 0..n for components)."""
    if instances is None:
        labels, n = ndimage.label(ids == cls, structure=structure(8))
        return labels, int(n), np.arange(n + 1, dtype=np.int64)
    keys, labels = np.unique(np.where(ids == cls, instances, 0), return_inverse=True)
    labels = labels.reshape(ids.shape).astype(np.int32)
    if keys.size and keys[0] != 0:
        keys, labels = np.concatenate([[0], keys]), labels + 1
    return labels, int(keys.size - 1), keys.astype(np.int64)


def first_pixels(labels: np.ndarray, n: int, origin: tuple[int, int], width: int) -> tuple[np.ndarray, np.ndarray]:
    """(first (n + 1,) int64 raster index in the image, boxes (n + 1, 4) y0, y1, x0, x1 in the image)."""
    first, boxes = np.zeros(n + 1, np.int64), np.zeros((n + 1, 4), np.int64)
    for k, sl in enumerate(ndimage.find_objects(labels, n), 1):
        if sl is None:
            continue
        top = sl[0].start
        x = sl[1].start + int(np.argmax(labels[top, sl[1]] == k))
        first[k] = (top + origin[0]) * width + x + origin[1]
        boxes[k] = sl[0].start + origin[0], sl[0].stop + origin[0], sl[1].start + origin[1], sl[1].stop + origin[1]
    return first, boxes


def open_labels(labels: np.ndarray, n: int, interior: Box, shape: tuple[int, int], crossing=None) -> np.ndarray:
    """(n + 1,) bool: the labels that may continue in another block. Components (``crossing`` None): those
    touching a face; instances: those whose key is in ``crossing`` (pass ``np.isin(keys, crossing)``)."""
    if crossing is not None:
        flags = np.asarray(crossing, bool).copy()
    else:
        (y0, y1, x0, x1), (height, width) = interior, shape
        flags = np.zeros(n + 1, bool)
        for inner, line in ((y0 > 0, labels[0]), (y1 < height, labels[-1]), (x0 > 0, labels[:, 0])):
            if inner:
                flags[line] = True
        if x1 < width:
            flags[labels[:, -1]] = True
    flags[0] = False
    return flags


def edges(labels: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The four edge lines of a block's component labels (unique over classes) and of its class ids."""
    out = {}
    for name, a in (("labels", labels), ("ids", ids)):
        out |= {f"{name}_top": a[0], f"{name}_bottom": a[-1], f"{name}_left": a[:, 0], f"{name}_right": a[:, -1]}
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _sides(a: Block, b: Block) -> tuple[str, str, slice, slice, tuple[int, ...]]:
    """Which lines of ``a`` and ``b`` (b right of or below a, or diagonal) face each other, and the shifts."""
    di, dj = b.index[0] - a.index[0], b.index[1] - a.index[1]
    if (di, dj) == (0, 1):
        return "right", "left", slice(None), slice(None), (-1, 0, 1)
    if (di, dj) == (1, 0):
        return "bottom", "top", slice(None), slice(None), (-1, 0, 1)
    if (di, dj) == (1, 1):
        return "bottom", "top", slice(-1, None), slice(0, 1), (0,)
    return "bottom", "top", slice(0, 1), slice(-1, None), (0,)  # (1, -1)


def face_pairs(a: Block, ea: dict, b: Block, eb: dict) -> np.ndarray:
    """(n, 2) int64 (label of a, label of b): components of one class whose pixels are 8-neighbours across the
    face (or corner) of two neighbouring blocks."""
    side_a, side_b, cut_a, cut_b, shifts = _sides(a, b)
    la, ia = ea[f"labels_{side_a}"][cut_a], ea[f"ids_{side_a}"][cut_a]
    lb, ib = eb[f"labels_{side_b}"][cut_b], eb[f"ids_{side_b}"][cut_b]
    found = []
    for s in shifts:
        n = len(la) - abs(s)
        p, q = (slice(0, n), slice(s, s + n)) if s >= 0 else (slice(-s, -s + n), slice(0, n))
        ok = (la[p] > 0) & (lb[q] > 0) & (ia[p] == ib[q])
        found.append(np.stack([la[p][ok], lb[q][ok]], 1).astype(np.int64))
    return np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)


def join(pieces: list[Piece], counts: list[int] | None = None, pairs: dict | None = None) -> list[Joined]:
    """Whole objects from the open pieces of every block: instances (``counts`` None) by (class, id);
    components by the face ``pairs`` ((k, m) -> :func:`face_pairs`) of blocks with ``counts`` labels."""
    if counts is None:
        groups = [(p.cls, p.key) for p in pieces]
    else:
        present = [[] for _ in counts]
        for p in pieces:
            present[p.block].append(p.key)
        lookups = final_ids(counts, [np.asarray(ids, np.int64) for ids in present], pairs or {})
        groups = [int(lookups[p.block][p.key]) for p in pieces]
    joined: dict = {}
    for g, p in zip(groups, pieces):
        old = joined.get(g)
        if old is None:
            joined[g] = Joined(p.cls, None if counts is not None else p.key, p.first, p.box)
        else:
            box = (min(old.box[0], p.box[0]), max(old.box[1], p.box[1]), min(old.box[2], p.box[2]))
            joined[g] = Joined(old.cls, old.key, min(old.first, p.first), (*box, max(old.box[3], p.box[3])))
    return list(joined.values())


def object_crop(obj: Joined, ids: np.ndarray, instances: np.ndarray | None, origin: tuple[int, int], width: int):
    """The object's bool mask in a crop (``ids``, ``instances``: the crop, holding its whole box; ``origin``
    its image coordinates): its instance id and class, or the component of its class at its first pixel."""
    if obj.key is not None:
        return (ids == obj.cls) & (instances == obj.key)
    labels, _ = ndimage.label(ids == obj.cls, structure=structure(8))
    y, x = divmod(obj.first, width)
    return labels == labels[y - origin[0], x - origin[1]]
