"""Object measurements on shapes with known answers; summaries checked by hand."""

import math

import numpy as np
import pytest
from _helpers import disc

from unet_tf.objects.morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, measure_objects, summarize_objects

NAMES = ("background", "axon", "myelin")


def only(rows):
    assert len(rows) == 1
    return rows[0]


def test_square_by_hand():
    ids = np.zeros((30, 40), np.uint8)
    ids[5:15, 7:17] = 1
    row = only(measure_objects(ids, NAMES, image_name="sq"))
    assert set(row) == set(OBJECT_COLUMNS) - {"scale_factor", "scale_source"}  # those two: prediction's
    assert (row["image"], row["class"], row["object_id"]) == ("sq", "axon", 1)
    assert row["area_px"] == 100
    assert (row["centroid_y"], row["centroid_x"]) == pytest.approx((9.5, 11.5))
    assert (row["bbox_y0"], row["bbox_x0"], row["bbox_y1"], row["bbox_x1"]) == (5, 7, 15, 17)
    assert row["equivalent_diameter_px"] == pytest.approx(math.sqrt(4 * 100 / math.pi))
    assert row["perimeter_px"] == pytest.approx(36.0)  # polygon through boundary pixel centres
    assert row["solidity"] == pytest.approx(1.0)
    assert row["eccentricity"] == pytest.approx(0.0, abs=1e-12)
    for col in ("area_um2", "equivalent_diameter_um", "perimeter_um"):
        assert row[col] is None


def test_disc_area_roundness_perimeter():
    r = 20
    ids = disc((100, 100), 50, 50, r).astype(np.uint8)
    row = only(measure_objects(ids, NAMES, image_name="d"))
    assert row["area_px"] == pytest.approx(math.pi * r * r, rel=0.01)
    assert (row["centroid_y"], row["centroid_x"]) == pytest.approx((50, 50))
    assert row["eccentricity"] < 0.1
    assert row["perimeter_px"] == pytest.approx(2 * math.pi * r, rel=0.08)
    assert row["solidity"] == pytest.approx(1.0, abs=0.01)


def test_ellipse_eccentricity():
    yy, xx = np.mgrid[:80, :100]
    ids = (((yy - 40) / 10) ** 2 + ((xx - 50) / 30) ** 2 <= 1).astype(np.uint8)
    row = only(measure_objects(ids, NAMES, image_name="e"))
    assert row["eccentricity"] == pytest.approx(math.sqrt(1 - (10 / 30) ** 2), abs=0.03)
    # rotating the image does not change it
    row_t = only(measure_objects(ids.T.copy(), NAMES, image_name="e"))
    assert row_t["eccentricity"] == pytest.approx(row["eccentricity"], abs=1e-12)


def test_l_shape_solidity_by_hand():
    ids = np.zeros((12, 12), np.uint8)
    ids[0:10, 0:3] = 1  # vertical bar, 30 px
    ids[7:10, 0:10] = 1  # horizontal bar, 30 px, 9 shared
    row = only(measure_objects(np.pad(ids, 2), NAMES, image_name="L"))
    assert row["area_px"] == 51
    # hull of pixel centres: (0,0) (0,2) (7,9) (9,9) (9,0); on row y it spans
    # x = 0..2+y for y <= 7 (3+y points) and x = 0..9 below: 52 + 20 = 72 points
    assert row["solidity"] == pytest.approx(51 / 72)


def test_hole_counts_in_solidity_not_in_perimeter():
    ids = np.zeros((11, 11), np.uint8)
    ids[2:9, 2:9] = 2
    ids[4:7, 4:7] = 0  # 7x7 ring around a 3x3 hole
    row = only(measure_objects(ids, NAMES, image_name="ring"))
    assert row["class"] == "myelin"
    assert row["area_px"] == 40
    assert row["solidity"] == pytest.approx(40 / 49)
    assert row["perimeter_px"] == pytest.approx(24.0)  # outer boundary only


def test_single_pixel_and_border_objects():
    ids = np.ones((10, 10), np.uint8)  # touches every border
    ids[0, 0] = 0
    ids[9, 9] = 2
    rows = measure_objects(ids, NAMES, image_name="b")
    big, dot = rows
    assert big["area_px"] == 98 and (big["bbox_y0"], big["bbox_x0"], big["bbox_y1"], big["bbox_x1"]) == (0, 0, 10, 10)
    assert dot["class"] == "myelin" and dot["area_px"] == 1
    assert (dot["centroid_y"], dot["centroid_x"]) == (9.0, 9.0)
    assert (dot["perimeter_px"], dot["eccentricity"], dot["solidity"]) == (0.0, 0.0, 1.0)


def test_pixel_size_scaling():
    ids = np.zeros((40, 40), np.uint8)
    ids[3:10, 5:25] = 1
    px = only(measure_objects(ids, NAMES, image_name="s"))
    um = only(measure_objects(ids, NAMES, image_name="s", pixel_size=0.25))
    assert um["area_um2"] == pytest.approx(140 * 0.25**2)
    assert um["equivalent_diameter_um"] == pytest.approx(px["equivalent_diameter_px"] * 0.25)
    assert um["perimeter_um"] == pytest.approx(px["perimeter_px"] * 0.25)
    for col in ("area_px", "centroid_y", "eccentricity", "solidity", "perimeter_px"):
        assert um[col] == px[col]


def test_min_size_drops_specks_and_renumbers():
    ids = np.zeros((20, 20), np.uint8)
    ids[0, 0:2] = 1  # speck, 2 px (first in raster order)
    ids[2:4, 5:8] = 1  # 6 px
    ids[8, 8] = 1  # speck, 1 px
    ids[12:15, 1:3] = 1  # 6 px
    ids[18, 10:15] = 1  # 5 px: exactly min_size, kept
    all_rows = measure_objects(ids, NAMES, image_name="m")
    assert [r["area_px"] for r in all_rows] == [2, 6, 1, 6, 5]
    rows = measure_objects(ids, NAMES, image_name="m", min_size=5)
    assert [r["object_id"] for r in rows] == [1, 2, 3]
    assert [r["area_px"] for r in rows] == [6, 6, 5]
    assert [(r["bbox_y0"], r["bbox_x0"]) for r in rows] == [(2, 5), (12, 1), (18, 10)]


def test_touching_objects_of_different_classes_are_separate():
    ids = np.zeros((10, 10), np.uint8)
    ids[2:6, 2:5] = 1
    ids[2:6, 5:7] = 2  # shares an edge with the class-1 block
    rows = measure_objects(ids, NAMES, image_name="t")
    assert [(r["class"], r["object_id"], r["area_px"]) for r in rows] == [("axon", 1, 12), ("myelin", 1, 8)]
    assert measure_objects(ids, NAMES, image_name="t", classes=[2])[0]["class"] == "myelin"
    same = np.where(ids > 0, 1, 0).astype(np.uint8)
    assert only(measure_objects(same, NAMES, image_name="t"))["area_px"] == 20


def test_connectivity_4_vs_8_on_diagonal_pixels():
    ids = np.zeros((5, 5), np.uint8)
    ids[1, 1] = ids[2, 2] = ids[3, 3] = 1
    row = only(measure_objects(ids, NAMES, image_name="c", connectivity=8))
    assert row["area_px"] == 3
    assert row["eccentricity"] == pytest.approx(1.0)  # a line
    assert row["perimeter_px"] == pytest.approx(4 * math.sqrt(2))  # there and back
    rows4 = measure_objects(ids, NAMES, image_name="c", connectivity=4)
    assert [(r["object_id"], r["area_px"], r["centroid_y"]) for r in rows4] == [(1, 1, 1.0), (2, 1, 2.0), (3, 1, 3.0)]
    with pytest.raises(ValueError, match="connectivity"):
        measure_objects(ids, NAMES, image_name="c", connectivity=6)


def test_background_not_measured_by_default_and_bad_input():
    ids = np.zeros((6, 6), np.uint8)
    assert measure_objects(ids, NAMES, image_name="empty") == []
    assert only(measure_objects(ids, NAMES, image_name="bg", classes=[0]))["area_px"] == 36
    with pytest.raises(ValueError, match="outside"):
        measure_objects(ids + 3, NAMES, image_name="x")
    with pytest.raises(ValueError, match="2-D"):
        measure_objects(ids[None], NAMES, image_name="x")


def obj(image, cls, area, um2=None):
    return {"image": image, "class": cls, "area_px": area, "area_um2": um2}


def test_summary_by_hand_with_zero_object_class():
    rows = [
        obj("a", "axon", 2),
        obj("a", "axon", 9),
        obj("a", "axon", 4),
        obj("a", "myelin", 6),
        obj("b", "axon", 8),
        obj("b", "axon", 6),
    ]
    out = summarize_objects(rows, NAMES, ["a", "b", "c"])
    assert [(r["image"], r["class"], r["count"]) for r in out] == [
        ("a", "axon", 3),
        ("a", "myelin", 1),
        ("b", "axon", 2),
        ("b", "myelin", 0),
        ("c", "axon", 0),
        ("c", "myelin", 0),
    ]
    assert all(set(r) == set(SUMMARY_COLUMNS) for r in out)
    assert (out[0]["mean_area_px"], out[0]["median_area_px"]) == (5.0, 4.0)
    assert (out[1]["mean_area_px"], out[1]["median_area_px"]) == (6.0, 6.0)
    assert (out[2]["mean_area_px"], out[2]["median_area_px"]) == (7.0, 7.0)
    assert math.isnan(out[3]["mean_area_px"]) and math.isnan(out[3]["median_area_px"])
    assert out[0]["mean_area_um2"] is None and out[3]["median_area_um2"] is None

    scaled = summarize_objects(rows, NAMES, ["a", "b"], pixel_size=0.5)
    assert (scaled[0]["mean_area_um2"], scaled[0]["median_area_um2"]) == (1.25, 1.0)
    assert math.isnan(scaled[3]["mean_area_um2"])


def test_summary_takes_um2_from_rows_and_rejects_unknown_images():
    ids = np.zeros((20, 20), np.uint8)
    ids[0:2, 0:2] = 1  # 4 px
    ids[5:9, 5:9] = 1  # 16 px
    ids[15:18, 0:3] = 1  # 9 px
    rows = measure_objects(ids, NAMES, image_name="x", pixel_size=2.0)
    out = summarize_objects(rows, NAMES, ["x"])
    axon, myelin = out
    assert (axon["count"], axon["mean_area_px"], axon["median_area_px"]) == (3, 29 / 3, 9.0)
    assert axon["mean_area_um2"] == pytest.approx(4 * 29 / 3)
    assert axon["median_area_um2"] == pytest.approx(36.0)
    assert myelin["count"] == 0 and math.isnan(myelin["mean_area_um2"])
    with pytest.raises(ValueError, match="not among the images"):
        summarize_objects(rows, NAMES, ["y"])


def test_instances_keep_touching_objects_apart_and_intensity_is_measured():
    ids = np.zeros((20, 30), np.uint8)
    ids[5:15, 2:12] = 1
    ids[5:15, 12:22] = 1  # touching: one connected component
    instances = np.zeros_like(ids, np.int32)
    instances[5:15, 2:12] = 4
    instances[5:15, 12:22] = 9
    image = np.zeros(ids.shape, np.float32)
    image[5:15, 2:12] = 10.0
    image[5:15, 12:22] = np.arange(10, dtype=np.float32)[None, :]  # 0..9 along x
    assert [r["area_px"] for r in measure_objects(ids, NAMES)] == [200]
    rows = measure_objects(ids, NAMES, instances=instances, image=image, pixel_size=0.5)
    assert [(r["object_id"], r["area_px"]) for r in rows] == [(1, 100), (2, 100)]
    assert (rows[0]["mean_intensity"], rows[0]["max_intensity"]) == (10.0, 10.0)
    assert (rows[1]["mean_intensity"], rows[1]["max_intensity"]) == pytest.approx((4.5, 9.0))
    assert rows[1]["pixel_size_um"] == 0.5
