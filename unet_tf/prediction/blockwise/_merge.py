"""Instance ids across block faces: a halo-overlap graph, its connected components, consecutive final ids.

Each block segments its region (interior + halo) and keeps the labels of its
interior, numbered 1..n within the block. Every block also keeps its *ring*:
the region's labels outside its core (the interior shrunk by the halo), i.e.
every pixel that another block's region can cover. Two neighbouring blocks
(8-neighbours) both labelled the pixels where their regions overlap, a band of
twice the halo across their shared face, from the SAME probabilities (the
blend is global, :mod:`._predict`). A label ``a`` of one block and ``b`` of
the other are one object when they share at least ``MIN_OVERLAP`` of the
smaller one's pixels in the middle of that band (pixels with at least half a
halo of context in both blocks: a region's edge cuts objects short) (the halo-overlap rule of Cellpose's
``distributed_segmentation`` and dask-image's ``label_adjacency_graph`` with an
overlap, not a face-touch rule). A face-touch rule (labels on either side of
the face that touch) would merge two different cells that merely touch each
other on the face; with the overlap rule two touching cells stay two, because
in the shared band each block labels them apart.

The graph of matched labels (nodes: every (block, local id)) goes through
``scipy.sparse.csgraph.connected_components``; each component that holds at
least one label present in some interior gets a final id, consecutive from 1 in
the raster order of each object's first pixel in the image (the order of
``measure_objects``' ``object_id``, so the table's ids are the label ids).
"""

from __future__ import annotations

import numpy as np

from ._plan import Block, Box

MIN_OVERLAP = 0.5  # share of the smaller label's pixels in the shared band that makes two labels one object


def ring(labels: np.ndarray, block: Block, halo: int) -> np.ndarray:
    """The region's labels (h, w) with the core (interior shrunk by ``halo``) set to 0: a copy."""
    out = np.array(labels, copy=True)
    (y0, y1, x0, x1), (r0, _, c0, _) = block.interior, block.region
    core = (slice(y0 + halo - r0, y1 - halo - r0), slice(x0 + halo - c0, x1 - halo - c0))
    if core[0].start < core[0].stop and core[1].start < core[1].stop:
        out[core] = 0
    return out


def neighbours(blocks: list[Block]) -> list[tuple[int, int]]:
    """Pairs (k, m), k < m, of positions in ``blocks`` that are 8-neighbours in the block grid."""
    where = {b.index: k for k, b in enumerate(blocks)}
    pairs = []
    for k, b in enumerate(blocks):
        i, j = b.index
        for di, dj in ((0, 1), (1, -1), (1, 0), (1, 1)):
            m = where.get((i + di, j + dj))
            if m is not None:
                pairs.append((k, m))
    return pairs


def _crop(labels: np.ndarray, region: Box, box: Box) -> np.ndarray:
    return labels[box[0] - region[0] : box[1] - region[0], box[2] - region[2] : box[3] - region[2]]


def trusted(region: Box, shape: tuple[int, int], margin: int) -> Box:
    """``region`` less ``margin`` px on every side that is not the image border: where a block's labels had at
    least ``margin`` px of context."""
    (r0, r1, c0, c1), (height, width) = region, shape
    return (
        r0 + margin if r0 > 0 else r0,
        r1 - margin if r1 < height else r1,
        c0 + margin if c0 > 0 else c0,
        c1 - margin if c1 < width else c1,
    )


def matches(ring_a: np.ndarray, region_a: Box, ring_b: np.ndarray, region_b: Box, shape, margin: int) -> np.ndarray:
    """(n, 2) int64 pairs (label of a, label of b) that are one object by the halo-overlap rule.

    Only pixels with at least ``margin`` px of context in BOTH blocks are compared (half the halo: a band of one
    halo across the face), so a watershed cut short at the edge of one region never joins two objects.
    """
    ta, tb = trusted(region_a, shape, margin), trusted(region_b, shape, margin)
    box = (max(ta[0], tb[0]), min(ta[1], tb[1]), max(ta[2], tb[2]), min(ta[3], tb[3]))
    if box[0] >= box[1] or box[2] >= box[3]:
        return np.zeros((0, 2), np.int64)
    a = _crop(ring_a, region_a, box).astype(np.int64).ravel()
    b = _crop(ring_b, region_b, box).astype(np.int64).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pairs, shared = np.unique(np.stack([a[both], b[both]], 1), axis=0, return_counts=True)
    size_a = dict(zip(*np.unique(a[a > 0], return_counts=True)))
    size_b = dict(zip(*np.unique(b[b > 0], return_counts=True)))
    smaller = np.array([min(size_a[p], size_b[q]) for p, q in pairs])
    return pairs[shared >= MIN_OVERLAP * smaller]


def final_ids(
    counts: list[int],
    present: list[np.ndarray],
    pairs: dict[tuple[int, int], np.ndarray],
    firsts: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Per block, a lookup local id -> final id (int64, index 0 -> 0).

    Args:
        counts: labels 1..counts[k] of block k.
        present: the local ids of block k that occur in its interior (unique).
        pairs: (k, m) -> (n, 2) matched (local id in k, local id in m).
        firsts: per block, the raster index (y * W + x) in the image of the first interior pixel of each
            ``present`` id: final ids then follow the raster order of each object's first pixel, the order of
            ``measure_objects``' ``object_id``. None: the order of the blocks, then of the local ids.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # node of (k, id) = offsets[k] + id - 1
    total = int(offsets[-1])
    edges = [np.stack([offsets[k] + p[:, 0] - 1, offsets[m] + p[:, 1] - 1], 1) for (k, m), p in pairs.items()]
    edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(total, total))
    _, component = connected_components(graph, directed=False)
    shown = np.concatenate([offsets[k] + np.asarray(ids, np.int64) - 1 for k, ids in enumerate(present)] + [[]])
    shown = shown.astype(np.int64)
    key = shown if firsts is None else np.concatenate([np.asarray(f, np.int64) for f in firsts] + [[]])
    order = np.full(total and int(component.max()) + 1, 0, np.int64)
    by_key = np.argsort(key.astype(np.int64), kind="stable")
    firsts_of = np.unique(component[shown[by_key]], return_index=True)  # components, first seen in key order
    ranked = firsts_of[0][np.argsort(firsts_of[1])]
    order[ranked] = np.arange(1, ranked.size + 1)
    return [np.concatenate([[0], order[component[offsets[k] : offsets[k + 1]]]]) for k in range(len(counts))]
