"""Per-class scores on hand-made masks; mean vs pooled rows; atomic CSV; table text."""

import csv
import math

import numpy as np
import pytest

from unet_tf.evaluation.semantic import METRICS_COLUMNS, Evaluator, evaluate
from unet_tf.io.tables import format_table, write_csv


def metrics_table(per_image, class_names):
    evaluator = Evaluator(class_names)
    for name, (true_ids, pred_ids) in per_image.items():
        evaluator.add(name, true_ids, pred_ids)
    return evaluator.rows()


BINARY = ("background", "cell")

# IoU = 1/3 case: truth and prediction each hold 2 pixels, 1 shared
T = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]], np.uint8)
P = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]], np.uint8)


def test_hand_made_3x3():
    bg, fg = evaluate(T, P, BINARY)
    assert "image" not in fg
    assert fg["class"] == "cell"
    assert (fg["tp"], fg["fp"], fg["fn"]) == (1, 1, 1)
    assert fg["iou"] == pytest.approx(1 / 3)
    assert fg["dice"] == pytest.approx(1 / 2)
    assert (fg["precision"], fg["recall"]) == pytest.approx((1 / 2, 1 / 2))
    # background: 7 true, 7 predicted, 6 shared
    assert (bg["tp"], bg["fp"], bg["fn"]) == (6, 1, 1)
    assert bg["iou"] == pytest.approx(6 / 8)
    assert bg["dice"] == pytest.approx(12 / 14)
    assert fg["pixel_accuracy"] == bg["pixel_accuracy"] == pytest.approx(7 / 9)


def test_class_absent_from_truth_and_prediction_is_nan():
    rows = evaluate(T, P, ("background", "cell", "vessel"))
    vessel = rows[2]
    assert (vessel["tp"], vessel["fp"], vessel["fn"]) == (0, 0, 0)
    for key in ("dice", "iou", "precision", "recall"):
        assert math.isnan(vessel[key])
    assert rows[1]["iou"] == pytest.approx(1 / 3)  # other classes unaffected
    # predicted but absent from truth: precision 0, recall undefined
    missed = evaluate(np.zeros((2, 2), np.uint8), np.array([[0, 1], [0, 0]], np.uint8), BINARY)[1]
    assert missed["dice"] == 0 and missed["precision"] == 0 and math.isnan(missed["recall"])


# Two images where the mean over images and the pooled counts disagree:
#   A (1x4): truth 1 1 0 0, prediction 1 0 0 0 -> cell tp 1, fn 1: dice 2/3;
#            background tp 2, fp 1: dice 4/5; accuracy 3/4
#   B (2x4): all cell in truth and prediction -> cell dice 1; background
#            absent from both (NaN); accuracy 1
A = (np.array([[1, 1, 0, 0]], np.uint8), np.array([[1, 0, 0, 0]], np.uint8))
B = (np.ones((2, 4), np.uint8), np.ones((2, 4), np.uint8))


def by_key(rows):
    return {(r["image"], r["class"]): r for r in rows}


def test_mean_row_differs_from_pooled_row():
    rows = metrics_table({"A.tif": A, "B.tif": B}, BINARY)
    assert [(r["image"], r["class"]) for r in rows] == [
        ("A.tif", "background"),
        ("A.tif", "cell"),
        ("B.tif", "background"),
        ("B.tif", "cell"),
        ("mean", "background"),
        ("mean", "cell"),
        ("all", "background"),
        ("all", "cell"),
    ]
    k = by_key(rows)
    assert k["A.tif", "cell"]["dice"] == pytest.approx(2 / 3)
    assert k["B.tif", "cell"]["dice"] == pytest.approx(1.0)
    assert math.isnan(k["B.tif", "background"]["dice"])
    # mean (macro): average of per-image scores, NaN skipped
    assert k["mean", "cell"]["dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert k["mean", "background"]["dice"] == pytest.approx(4 / 5)
    assert k["mean", "cell"]["pixel_accuracy"] == pytest.approx((3 / 4 + 1) / 2)
    assert k["mean", "cell"]["tp"] is None
    # all (pooled, micro): cell tp 9, fp 0, fn 1 -> dice 18/19; accuracy 11/12
    pooled = k["all", "cell"]
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (9, 0, 1)
    assert pooled["dice"] == pytest.approx(18 / 19)
    assert pooled["iou"] == pytest.approx(9 / 10)
    assert pooled["recall"] == pytest.approx(9 / 10)
    assert pooled["pixel_accuracy"] == pytest.approx(11 / 12)
    assert k["all", "background"]["dice"] == pytest.approx(4 / 5)


def test_evaluator_is_incremental_and_guards_names():
    ev = Evaluator(BINARY)
    assert ev.rows() == [] and len(ev) == 0
    first = ev.add("A.tif", *A)
    assert [r["image"] for r in first] == ["A.tif", "A.tif"]
    ev.add("B.tif", *B)
    assert repr(ev.rows()) == repr(metrics_table({"A.tif": A, "B.tif": B}, BINARY))  # repr: nan == nan
    with pytest.raises(ValueError, match="already"):
        ev.add("A.tif", *A)
    for reserved in ("mean", "all"):
        with pytest.raises(ValueError, match="reserved"):
            ev.add(reserved, *A)
    assert len(ev) == 2
    with pytest.raises(ValueError, match="shape"):
        ev.add("C.tif", T, P[:2])


def test_write_csv_is_atomic_and_complete(tmp_path):
    ev = Evaluator(BINARY)
    ev.add("A.tif", *A)
    ev.add("B.tif", *B)
    path = ev.write_csv(tmp_path / "out" / "metrics.csv")
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]  # no temp file left
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == METRICS_COLUMNS
    assert len(table) == 1 + 8
    rows = {(r[0], r[2]): dict(zip(METRICS_COLUMNS, r)) for r in table[1:]}  # image, (page,) class
    assert rows["B.tif", "background"]["dice"] == "nan"
    assert rows["mean", "cell"]["tp"] == ""
    assert rows["all", "cell"]["tp"] == "9"
    assert float(rows["all", "cell"]["dice"]) == 18 / 19


def test_write_csv_rejects_unknown_keys_without_leaving_a_file(tmp_path):
    target = tmp_path / "objects.csv"
    with pytest.raises(ValueError, match="not among the columns"):
        write_csv(target, [{"a": 1, "b": 2}], ("a",))
    assert list(tmp_path.iterdir()) == []
    write_csv(target, [{"a": 1}, {"a": None}, {}], ("a", "b"))
    assert target.read_text().splitlines() == ["a,b", "1,", ",", ","]


def test_format_table_is_aligned():
    ev = Evaluator(BINARY)
    ev.add("A.tif", *A)
    lines = ev.format_table().splitlines()
    assert lines[0].split() == [c for c in METRICS_COLUMNS if c != "page"]  # no stack: no page column
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + 6
    end = lines[0].index("dice") + len("dice")  # numbers right-aligned under their header
    assert [line[end - 6 : end] for line in lines[2:4]] == ["0.8000", "0.6667"]
    assert lines[-2].split()[:2] == ["all", "background"]
    assert lines[4].split()[:3] == ["mean", "background", "0.8000"] and lines[4].split()[-3:] == ["-", "-", "-"]
    small = format_table([{"x": "a", "n": 1.5}, {"x": "bb", "n": None}], ("x", "n"), digits=1)
    assert small.splitlines() == ["x     n", "--  ---", "a   1.5", "bb    -"]


def test_ignored_pixels_count_in_no_score():
    """Pixels whose true id is IGNORE_ID (unannotated) change no score, whatever is predicted there."""
    from unet_tf.data.targets import IGNORE_ID

    truth = np.array([[0, 1, 1], [0, IGNORE_ID, IGNORE_ID]], np.uint8)
    a = np.array([[0, 1, 0], [0, 0, 0]], np.uint8)
    b = np.array([[0, 1, 0], [0, 1, 1]], np.uint8)  # differs only where ignored
    rows_a, rows_b = evaluate(truth, a, BINARY), evaluate(truth, b, BINARY)
    assert repr(rows_a) == repr(rows_b)
    assert (rows_a[1]["tp"], rows_a[1]["fp"], rows_a[1]["fn"]) == (1, 0, 1)  # the 4 kept pixels only
    assert rows_a[1]["dice"] == pytest.approx(2 / 3)
