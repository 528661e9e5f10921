"""Probabilities / masks -> instances: seeded watershed, distance-transform split, components."""

import numpy as np
import pytest
from _helpers import disc
from scipy import ndimage as ndi

from unet_tf.data.targets import instance_target
from unet_tf.objects.instances import (
    fill_label_holes,
    instances_from_probabilities,
    label_components,
    remove_small,
    split_touching,
)


def ellipse(shape, cy, cx, a, b, angle):
    yy, xx = np.indices(shape).astype(float)
    y, x = yy - cy, xx - cx
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


@pytest.mark.parametrize("r, separation", [(8, 1.3), (15, 1.2), (15, 1.8), (30, 1.5)])
def test_split_touching_splits_two_touching_discs(r, separation):
    shape = (6 * r, 6 * r)
    c = 3 * r
    a = disc(shape, c, c - separation * r / 2, r)
    b = disc(shape, c, c + separation * r / 2, r)
    labels = split_touching(a | b)
    assert labels.dtype == np.int32 and labels.max() == 2
    # Each half goes to the object of its disc's centre.
    left, right = labels[c, int(c - separation * r / 2)], labels[c, int(c + separation * r / 2)]
    assert {left, right} == {1, 2}
    assert (labels[a & ~b] == left).mean() > 0.95 and (labels[b & ~a] == right).mean() > 0.95


@pytest.mark.parametrize(
    "shape_fn",
    [
        lambda s: disc(s, 60, 60, 40),
        lambda s: disc(s, 60, 60, 5),
        lambda s: ellipse(s, 60, 60, 50, 15, 0.0),
        lambda s: ellipse(s, 60, 60, 45, 12, 0.6),
        lambda s: (np.abs(np.indices(s)[0] - 60) < 12) & (np.abs(np.indices(s)[1] - 60) < 50),
    ],
)
def test_split_touching_keeps_convex_objects_whole(shape_fn):
    mask = shape_fn((120, 120))
    labels = split_touching(mask)
    assert labels.max() == 1 and (labels > 0).sum() == mask.sum()


def test_split_touching_never_merges_separate_objects():
    mask = disc((100, 100), 25, 25, 20) | disc((100, 100), 25, 75, 20) | disc((100, 100), 75, 25, 20)
    mask[80:83, 70:73] = True
    mask[80:83, 74:77] = True  # centres 4 px apart, well within min_distance = 10 px
    labels = split_touching(mask)
    assert labels.max() == 5 and labels[81, 71] != labels[81, 75]


def test_split_touching_min_size_and_empty():
    mask = disc((80, 80), 30, 30, 12)
    mask[70:72, 70:72] = True
    assert split_touching(mask).max() == 2
    labels = split_touching(mask, min_size=10)
    assert labels.max() == 1 and labels[70, 70] == 0
    assert not split_touching(np.zeros((5, 5), bool)).any()


def test_label_components_min_size_and_connectivity():
    mask = np.zeros((10, 10), bool)
    mask[1:4, 1:4] = True
    mask[4, 4] = True  # touches the square at a corner only
    mask[7:9, 7:9] = True
    assert label_components(mask).max() == 2
    assert label_components(mask, connectivity=4).max() == 3
    labels = label_components(mask, min_size=5)
    assert labels.max() == 1 and labels[2, 2] == 1 and labels[8, 8] == 0


def test_fill_label_holes_fills_only_single_owner_holes():
    labels = np.zeros((20, 30), np.int32)
    labels[2:10, 2:10] = 3
    labels[4:8, 4:8] = 0  # hole of object 3 (with pixels far from its rim)
    labels[2:10, 12:16] = 4  # objects 4 and 5 enclose a pocket together
    labels[2:10, 18:22] = 5
    labels[2:4, 16:18] = 4
    labels[8:10, 16:18] = 5
    labels[12:18, 2:8] = 6
    labels[14:16, 4:6] = 7  # a nested object inside 6 stays
    out = fill_label_holes(labels)
    assert (out[4:8, 4:8] == 3).all()
    assert (out[4:8, 16:18] == 0).all()
    assert (out[14:16, 4:6] == 7).all() and (out[12:18, 2:8] > 0).all()
    edge = np.zeros((6, 6), np.int32)
    edge[:, :3] = 1
    edge[2:4, 0] = 0  # notch open to the image edge: not a hole
    assert (fill_label_holes(edge)[2:4, 0] == 0).all()


def test_remove_small():
    labels = np.array([[0, 7, 7], [40, 40, 0], [2, 0, 0]])
    assert remove_small(labels, 2).tolist() == [[0, 7, 7], [40, 40, 0], [0, 0, 0]]


def synthetic_instances(shape=(160, 160)):
    """Seven discs, two pairs of them touching, one small one, one with a hole."""
    labels = np.zeros(shape, np.int32)
    specs = [(40, 40, 18), (40, 72, 16), (110, 40, 20), (118, 75, 15), (40, 125, 14), (115, 128, 16), (80, 100, 4)]
    for k, (cy, cx, r) in enumerate(specs, start=1):
        labels[disc(shape, cy, cx, r) & (labels == 0)] = k
    return labels


def probabilities_from(labels, noise=0.0, seed=0):
    """A 3-class softmax-like map of the instance target, smoothed and noised."""
    target = instance_target(labels, boundary_width=2)
    onehot = np.eye(3, dtype=np.float32)[target]
    onehot = ndi.gaussian_filter(onehot, sigma=(1, 1, 0))
    rng = np.random.default_rng(seed)
    onehot += noise * rng.random(onehot.shape, dtype=np.float32)
    return onehot / onehot.sum(axis=-1, keepdims=True)


def best_ious(true, pred):
    out = []
    for k in np.unique(true)[1:]:
        t = true == k
        ids, counts = np.unique(pred[t], return_counts=True)
        j = ids[np.argmax(counts)]
        p = pred == j
        out.append((t & p).sum() / (t | p).sum() if j else 0.0)
    return np.array(out)


def test_instances_from_probabilities_recovers_known_instances():
    true = synthetic_instances()
    pred = instances_from_probabilities(probabilities_from(true, noise=0.3))
    assert pred.dtype == np.int32
    assert pred.max() == true.max()
    assert (best_ious(true, pred) > 0.9).all()


def test_instances_from_probabilities_min_size_and_holes():
    true = synthetic_instances()
    prob = probabilities_from(true)
    hole = disc(true.shape, 110, 40, 3)
    prob[hole] = [1.0, 0.0, 0.0]  # background hole inside object 3
    pred = instances_from_probabilities(prob)
    assert pred.max() == 7 and (pred[hole] == pred[110, 30]).all() and pred[110, 40] > 0
    kept = instances_from_probabilities(prob, fill_holes=False)
    assert (kept[hole] == 0).all()
    small = instances_from_probabilities(prob, min_size=100)
    assert small.max() == 6 and small[80, 100] == 0


def test_instances_from_probabilities_keeps_seedless_objects_and_checks_shape():
    prob = np.zeros((20, 20, 3), np.float32)
    prob[..., 0] = 1
    prob[5:8, 5:8] = [0.1, 0.0, 0.9]  # all boundary: no interior seed
    labels = instances_from_probabilities(prob)
    assert labels.max() == 1 and (labels > 0).sum() == 9
    with pytest.raises(ValueError, match="prob"):
        instances_from_probabilities(prob[..., :2])


# === Fragments: weak seeds, minimum size ===

BACKGROUND, INTERIOR, BOUNDARY = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
FAINT = [0.2, 0.45, 0.35]  # foreground (0.8) but below the seed threshold


def blob(prob, cy, cx, r, rim=2):
    """A round object: interior inside ``r - rim``, boundary ring out to ``r``."""
    prob[disc(prob.shape[:2], cy, cx, r)] = BOUNDARY
    prob[disc(prob.shape[:2], cy, cx, r - rim)] = INTERIOR


def big_with_bump(rim_at_contact: bool) -> np.ndarray:
    """A disc (r 15, 709 px) with a 16 x 20 px faint bump on its right holding a 9 px seed.

    The bump's seed floods 240 px (no rim at the contact) or 323 px (rim):
    a fragment under ``min_size=400``, an object of its own at 200.
    """
    prob = np.tile(np.float32(BACKGROUND), (64, 96, 1))
    bump = np.zeros((64, 96), bool)
    bump[24:40, 44:64] = True
    prob[bump] = FAINT
    blob(prob, 32, 30, 15)
    if not rim_at_contact:  # the bump continues the disc: no boundary where they meet
        prob[bump & disc((64, 96), 32, 30, 15) & ~disc((64, 96), 32, 30, 13)] = FAINT
    prob[31:34, 55:58] = INTERIOR  # the weak seed
    return prob


def test_weak_seed_without_a_boundary_joins_its_neighbour():
    prob = big_with_bump(rim_at_contact=False)
    assert instances_from_probabilities(prob, min_size=200, weak_seed_fraction=0).max() == 2  # the old split
    labels = instances_from_probabilities(prob, min_size=400)
    assert labels.max() == 1
    assert labels[32, 30] == labels[32, 60] == 1  # the bump is part of the disc


def test_weak_seed_behind_a_boundary_is_dropped_not_glued_on():
    prob = big_with_bump(rim_at_contact=True)
    labels = instances_from_probabilities(prob, min_size=400)
    assert labels.max() == 1 and labels[32, 30] == 1
    big = disc((64, 96), 32, 30, 15)
    assert labels[32, 60] == 0 and (labels[~big] == 0).all()
    assert (labels[big] == 1).mean() > 0.97  # less a few px of the ring where the two floods met


def test_weak_seed_region_of_min_size_is_never_dropped():
    """Two touching discs (709 px each) across a boundary ring; the right one has a thin interior
    (a 49 px seed, weak under 0.25 * 541 px) but floods 651 px: above min_size 541, it must stay.
    The original rule dropped it (one object left) because of its small seed alone."""
    prob = np.tile(np.float32(BACKGROUND), (64, 96, 1))
    blob(prob, 32, 24, 15)
    blob(prob, 32, 54, 15, rim=11)  # interior r 4: 49 px
    free = instances_from_probabilities(prob, min_size=0)
    assert np.bincount(free.ravel())[1:].tolist() == [766, 651]
    labels = instances_from_probabilities(prob, min_size=541)
    assert (labels == free).all()
    for bump in (False, True):  # the bump's region (240 / 323 px) is an object of its own at min_size 200
        labels = instances_from_probabilities(big_with_bump(rim_at_contact=bump), min_size=200)
        assert labels.max() == 2 and labels[32, 30] != labels[32, 60] != 0
    fragment = instances_from_probabilities(prob, min_size=700)  # 651 px behind a boundary: a fragment
    assert fragment.max() == 1 and fragment[32, 24] == 1 and fragment[32, 54] == 0


def test_weak_seed_region_enclosed_by_one_object_joins_it_whatever_its_size():
    """A faint core (r 8, above min_size 100) with a 9 px seed, in a fainter ring inside a disc, no boundary
    between: all its rim is on one neighbour, so it is part of that object, not an object of its own."""
    prob = np.tile(np.float32(BACKGROUND), (64, 64, 1))
    blob(prob, 32, 32, 20)
    prob[disc((64, 64), 32, 32, 10)] = [0.4, 0.3, 0.3]  # floods after the core: the core is the seed's
    prob[disc((64, 64), 32, 32, 8)] = FAINT
    prob[31:34, 31:34] = INTERIOR
    assert instances_from_probabilities(prob, min_size=100, weak_seed_fraction=0).max() == 2
    labels = instances_from_probabilities(prob, min_size=100)
    assert labels.max() == 1 and (labels[disc((64, 64), 32, 32, 20)] == 1).all()


def test_small_objects_below_and_above_min_size():
    prob = np.tile(np.float32(BACKGROUND), (64, 96, 1))
    blob(prob, 32, 20, 15)
    blob(prob, 32, 43, 9)  # touches the big one across its boundary ring: 253 px, interior 149 px
    blob(prob, 10, 80, 4)  # lone, 49 px
    prob[45:59, 70:82] = FAINT  # lone, 168 px, with a weak 9 px seed
    prob[51:54, 75:78] = INTERIOR
    labels = instances_from_probabilities(prob, min_size=100)
    assert labels.max() == 3
    assert len({labels[32, 20], labels[32, 43], labels[52, 76]}) == 3 and 0 not in {labels[32, 43], labels[52, 76]}
    assert labels[10, 80] == 0  # below min_size: dropped
    assert (labels == labels[52, 76]).sum() == 168  # small but above min_size, alone: kept whole


def test_fragment_dropped_inside_an_object_becomes_part_of_it():
    prob = np.tile(np.float32(BACKGROUND), (64, 64, 1))
    blob(prob, 32, 32, 20)
    prob[28:37, 28:37] = BOUNDARY  # a 9 x 9 fragment with its own seed, ringed by boundary
    prob[31:34, 31:34] = INTERIOR
    for fraction in (0.0, 0.25):  # dropped by min_size, or as a weak seed behind a boundary
        labels = instances_from_probabilities(prob, min_size=100, weak_seed_fraction=fraction)
        assert labels.max() == 1 and (labels[disc((64, 64), 32, 32, 20)] == 1).all()


def test_small_objects_packed_around_a_large_one_are_split_off():
    """The median inscribed radius comes from every peak of the cluster (median 11 px here), not from the
    cluster's largest object (40 px): with the latter, h = 6 px would merge the four small discs in."""
    yy, xx = np.mgrid[:160, :160]
    mask = (yy - 80) ** 2 + (xx - 80) ** 2 <= 40**2
    for cy, cx in [(80, 128), (80, 32), (128, 80), (32, 80)]:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 11**2
    assert ndi.label(mask)[1] == 1
    labels = split_touching(mask)
    assert labels.max() == 5
    assert labels[80, 80] != labels[80, 128] != labels[80, 32]
