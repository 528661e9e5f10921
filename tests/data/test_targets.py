"""Instance targets: 3-class map, separation-border weights, ignore regions from markers."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from _helpers import disc

from unet_tf.data.targets import (
    IGNORE_ID,
    border_weights,
    format_ignore_stats,
    ignore_from_markers,
    ignore_stats,
    instance_target,
    marker_margin,
    median_equivalent_radius,
    min_object_size,
    object_areas,
    unannotated_markers,
    with_ignore,
)


def test_two_touching_squares_get_a_boundary_between_them():
    labels = np.zeros((12, 14), np.uint16)
    labels[2:10, 2:7] = 4
    labels[2:10, 7:12] = 9
    t = instance_target(labels, boundary_width=1)
    assert t.dtype == np.uint8
    # Rows 3..8: boundary at the outer edges and on both sides of the contact line.
    assert t[5].tolist() == [0, 0, 2, 1, 1, 1, 2, 2, 1, 1, 1, 2, 0, 0]
    assert (t[2, 2:12] == 2).all() and (t[9, 2:12] == 2).all()
    assert (t[labels == 0] == 0).all()
    # The interior splits into exactly one component per object.
    from scipy import ndimage as ndi

    assert ndi.label(t == 1)[1] == 2


@pytest.mark.parametrize("width", [1, 2, 3])
def test_lone_square_gets_a_ring_of_the_width(width):
    labels = np.zeros((20, 20), np.int32)
    labels[4:16, 4:16] = 1
    t = instance_target(labels, boundary_width=width)
    want = np.zeros_like(t)
    want[4:16, 4:16] = 2
    want[4 + width : 16 - width, 4 + width : 16 - width] = 1
    np.testing.assert_array_equal(t, want)


def test_object_at_the_image_edge_has_no_boundary_there():
    labels = np.zeros((10, 10), np.int32)
    labels[:, :5] = 1
    t = instance_target(labels, boundary_width=2)
    assert (t[:, 3:5] == 2).all() and (t[:, :3] == 1).all()


def test_with_ignore_sets_ignore_id():
    t = np.ones((3, 3), np.uint8)
    ignore = np.eye(3, dtype=bool)
    out = with_ignore(t, ignore)
    assert (out[ignore] == IGNORE_ID).all() and (out[~ignore] == 1).all() and (t == 1).all()


def brute_two_nearest(labels):
    """d1, d2 at every pixel by brute force over every object's pixel coordinates."""
    yy, xx = np.indices(labels.shape)
    dists = []
    for k in np.unique(labels)[1:]:
        py, px = np.nonzero(labels == k)
        d = np.hypot(yy[..., None] - py, xx[..., None] - px).min(axis=-1)
        dists.append(d)
    dists = np.sort(np.stack(dists), axis=0)
    return dists[0], dists[1]


def three_objects():
    labels = np.zeros((40, 48), np.int32)
    labels[5:15, 4:14] = 1
    labels[5:15, 17:27] = 2  # 3 px gap to object 1
    labels[22:34, 10:20] = 5
    labels[30:36, 40:46] = 8  # far away
    return labels


def test_border_weights_by_hand():
    labels = three_objects()
    w = border_weights(labels, w0=10, sigma=5)
    assert w.dtype == np.float32
    # Middle of the 3-px gap between objects 1 and 2 (columns 14, 15, 16): d1 = d2 = 2.
    assert w[10, 15] == pytest.approx(1 + 10 * math.exp(-16 / 50), rel=1e-6)
    # Gap pixel next to object 1: d1 = 1, d2 = 3, same sum.
    assert w[10, 14] == pytest.approx(1 + 10 * math.exp(-16 / 50), rel=1e-6)
    # Inside object 1, 4 px from object 2: d1 = 0, d2 = 4.
    assert w[10, 13] == pytest.approx(1 + 10 * math.exp(-16 / 50), rel=1e-6)
    assert w[10, 12] == pytest.approx(1 + 10 * math.exp(-25 / 50), rel=1e-6)
    # Background_only zeroes the term on object pixels.
    wb = border_weights(labels, background_only=True)
    assert wb[10, 12] == 1 and wb[10, 15] == w[10, 15]


def test_border_weights_against_brute_force_everywhere():
    labels = three_objects()
    d1, d2 = brute_two_nearest(labels)
    sigma, w0 = 3.0, 7.0
    want = 1 + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    got = border_weights(labels, w0=w0, sigma=sigma)
    exact = d2 <= 4 * sigma
    np.testing.assert_allclose(got[exact], want[exact], rtol=1e-5)
    # Beyond the cut-off the error stays under the documented bound.
    assert np.abs(got - want).max() <= w0 * math.exp(-8) + 1e-6
    assert np.abs(got[~exact] - want[~exact]).max() > 0  # the cut-off was exercised


def test_border_weights_trivial_cases():
    labels = three_objects()
    assert (border_weights(labels, w0=0) == 1).all()
    one = (labels == 1).astype(np.int32)
    assert (border_weights(one) == 1).all()
    assert (border_weights(np.zeros((5, 5), np.int32)) == 1).all()
    sparse = labels.astype(np.int64) * 10**9  # huge, sparse ids give the same weights
    np.testing.assert_array_equal(border_weights(sparse), border_weights(labels))


def sparse_frame():
    """Four nuclei of radius 10 with markers of radius 6; nuclei 1 and 3 annotated."""
    shape = (80, 80)
    centres = [(20, 20), (20, 45), (55, 20), (55, 60)]
    seg = np.zeros(shape, np.uint16)
    markers = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        if i in (1, 3):
            seg[disc(shape, cy, cx, 10)] = 10 + i
        markers[disc(shape, cy + 1, cx - 1, 6)] = i  # slightly off-centre
    nuclei = [disc(shape, cy, cx, 10) for cy, cx in centres]
    return seg, markers, nuclei


def test_ignore_covers_unannotated_nuclei_and_never_annotated_ones():
    seg, markers, nuclei = sparse_frame()
    assert unannotated_markers(seg, markers).tolist() == [2, 4]
    assert median_equivalent_radius(seg) == pytest.approx(math.sqrt(disc((80, 80), 40, 40, 10).sum() / math.pi))
    ignore = ignore_from_markers(seg, markers)
    assert ignore.dtype == bool
    assert not ignore[seg > 0].any()
    assert ignore[nuclei[1]].all() and ignore[nuclei[3]].all()  # default margin 0.8 x 10 px
    assert ignore[markers == 2].all() and ignore[markers == 4].all()
    assert not ignore[0, 79] and not ignore[79, 0]
    # A margin of 0 ignores exactly the unannotated markers.
    np.testing.assert_array_equal(ignore_from_markers(seg, markers, margin=0), np.isin(markers, [2, 4]))


def test_ignore_region_stops_at_an_annotated_neighbour():
    seg, markers, _ = sparse_frame()
    ignore = ignore_from_markers(seg, markers, margin=30)
    assert ignore.any() and not ignore[seg > 0].any()


def test_fully_annotated_frame_ignores_nothing():
    seg, markers, nuclei = sparse_frame()
    for i, nucleus in enumerate(nuclei, start=1):
        seg[nucleus] = i
    assert not ignore_from_markers(seg, markers).any()
    stats = ignore_stats([ignore_from_markers(seg, markers), ignore_from_markers(*sparse_frame()[:2])])
    assert stats["frames"] == 2 and stats["full_frames"] == 1 and stats["partial_frames"] == 1
    assert stats["pixels"] == 2 * 80 * 80 and stats["ignored_pixels"] > 0
    assert format_ignore_stats(stats).startswith("2 annotated frames: 1 full, 1 partial;")


GOWT1 = Path(os.environ.get("UNET_TF_DATA", "data")) / "Fluo-N2DH-GOWT1"


@pytest.mark.slow  # real data
@pytest.mark.skipif(not (GOWT1 / "01_GT" / "SEG" / "man_seg005.tif").exists(), reason="GOWT1 data absent")
def test_gowt1_partial_frame_every_marker_is_annotated_or_ignored():
    import tifffile

    seg = tifffile.imread(GOWT1 / "01_GT" / "SEG" / "man_seg005.tif")
    markers = tifffile.imread(GOWT1 / "01_GT" / "TRA" / "man_track005.tif")
    ignore = ignore_from_markers(seg, markers)
    assert not ignore[seg > 0].any()
    covered = ignore | (seg > 0)
    for k in np.unique(markers)[1:]:
        assert covered[markers == k].mean() > 0.95, k
    n_markers, n_annotated = np.unique(markers).size - 1, np.unique(seg).size - 1
    assert unannotated_markers(seg, markers).size == n_markers - n_annotated > 0


def test_object_areas_and_min_object_size_by_hand():
    a = np.zeros((10, 10), np.int32)
    a[0:2, 0:3] = 7  # 6 px
    a[5:9, 5:9] = 2  # 16 px
    b = np.zeros((4, 4), np.uint16)
    b[1:3, 1:3] = 1  # 4 px
    areas = object_areas([a, b])
    assert sorted(areas.tolist()) == [4, 6, 16]
    assert min_object_size(areas, percentile=50, fraction=0.5) == 3  # median 6
    assert min_object_size(areas, percentile=0, fraction=0.25) == 1  # 0.25 * 4
    assert min_object_size(np.arange(1, 101), percentile=5, fraction=0.25) == 1  # never 0 with objects
    assert min_object_size(object_areas([np.zeros((3, 3), np.int32)])) == 0  # no objects: no minimum
    assert min_object_size(object_areas([])) == 0


def test_min_object_size_default_is_a_quarter_of_the_5th_percentile():
    areas = np.arange(1000, 3000, 20)  # 100 objects, 5th percentile 1099
    assert min_object_size(areas) == round(0.25 * np.percentile(areas, 5)) == 275
    with pytest.raises(ValueError, match="fraction"):
        min_object_size(areas, fraction=0)
    with pytest.raises(ValueError, match="percentile"):
        min_object_size(areas, percentile=101)


def test_marker_margin_is_the_factor_times_the_median_radius_of_the_set():
    areas = np.pi * np.array([4.0, 9.0, 25.0, 100.0, 1.0])  # radii 2, 3, 5, 10, 1: median 3
    assert marker_margin(areas) == pytest.approx(0.8 * 3)
    assert marker_margin(areas, factor=1.0) == pytest.approx(3)
    assert math.isnan(marker_margin(np.zeros(0)))
