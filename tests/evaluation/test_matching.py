"""Instance metrics: hand cases, an independent brute-force implementation, stardist if installed."""

import math

import numpy as np
import pytest

from unet_tf.errors import UserInputError
from unet_tf.evaluation.matching import (
    INSTANCE_COLUMNS,
    THRESHOLDS,
    InstanceEvaluator,
    Overlaps,
    evaluate_instances,
    instance_counts,
    match_pairs,
    overlap_table,
)


def hand_case():
    """2 true squares; 3 predictions: IoU 0.6 with A, 0.4 with B, one stray."""
    true = np.zeros((50, 50), np.uint16)
    true[0:10, 0:10] = 7
    true[20:30, 0:10] = 3
    pred = np.zeros((50, 50), np.int32)
    pred[0:10, 0:6] = 1  # 60 / 100 of A
    pred[20:30, 0:4] = 2  # 40 / 100 of B
    pred[40:45, 40:45] = 5  # nothing
    return true, pred


def test_hand_case_scores():
    s = evaluate_instances(*hand_case())
    assert (s["n_true"], s["n_pred"], s["tp"], s["fp"], s["fn"]) == (2, 3, 1, 2, 1)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(2 / 5)
    assert s["ap50"] == pytest.approx(1 / 4)
    # IoU 0.6 counts at 0.50, 0.55 and 0.60 (IoU >= t): 3 * 0.25 / 10.
    assert s["mean_ap"] == pytest.approx(0.075)
    assert s["sq"] == pytest.approx(0.6)
    assert s["rq"] == pytest.approx(1 / 2.5)
    assert s["pq"] == pytest.approx(0.6 / 2.5)
    assert s["seg"] == pytest.approx((0.6 + 0.0) / 2)  # B is covered 40 %: no SEG partner
    assert (s["count_error"], s["count_error_rel"]) == (1, pytest.approx(0.5))
    assert set(s) == set(INSTANCE_COLUMNS) - {"image"}


def test_perfect_and_empty():
    true, _ = hand_case()
    s = evaluate_instances(true, true)
    assert (s["tp"], s["fp"], s["fn"], s["ap50"], s["mean_ap"], s["pq"], s["seg"]) == (2, 0, 0, 1, 1, 1, 1)
    e = evaluate_instances(np.zeros((5, 5), int), np.zeros((5, 5), int))
    assert e["tp"] == 0 and math.isnan(e["ap50"]) and math.isnan(e["seg"]) and math.isnan(e["precision"])
    m = evaluate_instances(true, np.zeros_like(true))
    assert (m["fn"], m["ap50"], m["seg"], m["pq"], m["recall"]) == (2, 0, 0, 0, 0)


def test_ignore_drops_predictions_mostly_inside():
    true, pred = hand_case()
    ignore = np.zeros(true.shape, bool)
    ignore[40:45, 40:43] = True  # 60 % of the stray prediction
    ignore[20:30, 0:1] = True  # 25 % of prediction 2: kept
    s = evaluate_instances(true, pred, ignore)
    assert (s["n_pred"], s["n_ignored"], s["tp"], s["fp"], s["fn"]) == (2, 1, 1, 1, 1)
    ignore[20:30, 0:3] = True  # now 75 % of prediction 2
    s = evaluate_instances(true, pred, ignore)
    assert (s["n_pred"], s["n_ignored"], s["fp"], s["n_true"]) == (1, 2, 0, 2)
    assert s["seg"] == pytest.approx(0.6 / 2)  # as without ignore: B is covered 40 % by prediction 2


def test_seg_sees_predictions_in_the_ignore_region():
    """CTC SEG: a prediction merging true object R (100 px) with an unannotated neighbour (150 px, ignored)
    covers all of R: Jaccard 100 / 250 = 0.4, although 60 % of it lies in the ignore region."""
    true = np.zeros((30, 40), np.int32)
    true[5:15, 5:15] = 4
    ignore = np.zeros(true.shape, bool)
    ignore[5:15, 15:30] = True
    pred = np.where(true > 0, 9, 0) + np.where(ignore, 9, 0)
    s = evaluate_instances(true, pred, ignore)
    assert (s["n_pred"], s["n_ignored"], s["tp"], s["fp"], s["fn"]) == (0, 1, 0, 0, 1)
    assert s["seg"] == pytest.approx(0.4)
    assert evaluate_instances(true, pred)["seg"] == pytest.approx(0.4)


def test_seg_matches_ctc_metrics(tmp_path):
    """``seg`` with and without an ignore region against py-ctcmetrics' SEG (which knows no ignore region)."""
    pytest.importorskip("ctc_metrics")
    tifffile = pytest.importorskip("tifffile")
    from ctc_metrics.metrics import seg
    from ctc_metrics.utils.representations import match

    rng = np.random.default_rng(5)
    for k in range(8):
        true = random_labels(rng)
        pred = perturbed(rng, true)
        y = rng.integers(0, 40)
        pred[y : y + 20, :20] = 777  # merges the true objects there, spills into the background
        ignore = np.zeros(true.shape, bool)
        ignore[:, :24] = true[:, :24] == 0
        tifffile.imwrite(tmp_path / f"t{k}.tif", true)
        tifffile.imwrite(tmp_path / f"p{k}.tif", pred)
        labels_ref, _, _, _, iou = match(str(tmp_path / f"t{k}.tif"), str(tmp_path / f"p{k}.tif"))
        want = seg([labels_ref], [iou])
        assert evaluate_instances(true, pred)["seg"] == pytest.approx(want)
        assert evaluate_instances(true, pred, ignore)["seg"] == pytest.approx(want)


def rectangles(width):
    """True: one 10 x 10 square; pred: its left ``width`` columns (IoU ``width / 10``)."""
    true = np.zeros((12, 12), np.int32)
    true[1:11, 1:11] = 1
    pred = np.zeros_like(true)
    pred[1:11, 1 : 1 + width] = 2
    return true, pred


def test_matching_counts_iou_equal_to_the_threshold():
    s = evaluate_instances(*rectangles(5))  # IoU exactly 0.5
    assert (s["tp"], s["fp"], s["fn"], s["ap50"], s["sq"]) == (1, 0, 0, 1.0, 0.5)
    s = evaluate_instances(*rectangles(7))  # IoU exactly 0.7: matched at 0.50 ... 0.70
    assert s["mean_ap"] == pytest.approx(5 / 10)
    true, pred = rectangles(5)
    pred[1:11, 6:11] = 3  # the other half: two partners at IoU 0.5, one is matched
    s = evaluate_instances(true, pred)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 0)
    matching = pytest.importorskip("stardist.matching")
    for true, pred in (rectangles(5), rectangles(7), (true, pred)):
        counts = instance_counts(true, pred)
        for i, t in enumerate(THRESHOLDS):
            ref = matching.matching(true, pred, thresh=t)
            assert (counts.tp[i], counts.fp[i], counts.fn[i]) == (ref.tp, ref.fp, ref.fn), t


def test_bool_images_are_foreground_masks():
    true, pred = hand_case()
    mask = true > 0  # two separate squares: two objects
    assert evaluate_instances(mask, pred) == evaluate_instances(true, pred)
    assert evaluate_instances(true, pred > 0)["n_pred"] == 3
    touching = np.zeros((8, 8), bool)
    touching[1:3, 1:3] = touching[3:5, 3:5] = True  # corner contact: one 8-connected object
    assert evaluate_instances(touching, touching)["n_true"] == 1


def test_negative_ids_are_refused():
    true, pred = hand_case()
    with pytest.raises(UserInputError, match="pred label image: negative object id -1"):
        evaluate_instances(true, np.where(pred > 0, pred, -1))
    with pytest.raises(UserInputError, match="true label image: negative object id -3"):
        instance_counts(np.where(true > 0, true.astype(np.int32), -3), pred)


def test_float_label_images_score_as_their_integer_ids():
    true, pred = hand_case()
    expected = evaluate_instances(true, pred)
    assert evaluate_instances(true.astype(np.float32), pred.astype(np.float64)) == expected
    with pytest.raises(UserInputError, match="pred label image: fractional ids"):
        evaluate_instances(true, pred + 0.5 * (pred > 0))


def test_hungarian_beats_greedy_below_one_half():
    # A (10 px) meets X (11 px) in 6 px: IoU 0.4, and Y (10 px) in 4 px: 0.25;
    # B (10 px) meets X in 5 px: 0.3125. Greedy by IoU takes A-X and leaves B alone.
    ov = Overlaps(
        np.array([1, 2]),
        np.array([1, 2]),
        np.array([10, 10]),
        np.array([11, 10]),
        rows=np.array([0, 0, 1]),
        cols=np.array([0, 1, 0]),
        inter=np.array([6, 4, 5]),
    )
    rows, cols, iou = match_pairs(ov, 0.1)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]
    assert sorted(iou.tolist()) == pytest.approx([0.25, 0.3125])
    rows, cols, iou = match_pairs(ov, 0.3)  # X wanted twice: the larger IoU wins
    assert (rows.tolist(), cols.tolist(), iou.tolist()) == ([0], [0], [0.4])


def random_labels(rng, shape=(64, 64), n=12):
    labels = np.zeros(shape, np.int32)
    for k in rng.permutation(np.arange(1, 3 * n))[:n]:
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(3, 16, size=2)
        labels[y : y + h, x : x + w] = k
    return labels


def perturbed(rng, true):
    pred = np.zeros_like(true)
    for k in np.unique(true)[1:]:
        if rng.random() < 0.15:
            continue  # missed object
        dy, dx = rng.integers(-2, 3, size=2)
        obj = np.roll(true == k, (dy, dx), axis=(0, 1))
        pred[obj] = k + 100
    y, x = rng.integers(0, true.shape[0] - 6, size=2)
    pred[y : y + 5, x : x + 6] = 999  # a false positive (may cover others)
    return pred


def brute_force(true, pred):
    """Pixel-set IoU of every pair, greedy matching at IoU >= t (unique at t >= 0.5 barring exact halves)."""
    t_ids, p_ids = np.unique(true)[1:], np.unique(pred)[1:]
    iou = np.zeros((t_ids.size, p_ids.size))
    seg = 0.0
    for i, a in enumerate(t_ids):
        ta = true == a
        for j, b in enumerate(p_ids):
            pb = pred == b
            inter = np.logical_and(ta, pb).sum()
            iou[i, j] = inter / np.logical_or(ta, pb).sum()
            if inter > 0.5 * ta.sum():
                seg += iou[i, j]
    tps = []
    for t in THRESHOLDS:
        used_t, used_p = set(), set()
        for i, j in sorted(zip(*np.nonzero(iou >= t)), key=lambda ij: -iou[ij]):
            if i not in used_t and j not in used_p:
                used_t.add(i), used_p.add(j)
        tps.append(len(used_t))
    aps = [tp / (t_ids.size + p_ids.size - tp) for tp in tps]
    matched50 = iou[iou >= 0.5].sum()
    return {
        "tp": tps[0],
        "ap50": aps[0],
        "mean_ap": np.mean(aps),
        "seg": seg / t_ids.size,
        "pq": matched50 / (tps[0] + 0.5 * (p_ids.size - tps[0]) + 0.5 * (t_ids.size - tps[0])),
    }


def test_against_brute_force_on_random_images():
    rng = np.random.default_rng(3)
    for _ in range(15):
        true = random_labels(rng)
        pred = perturbed(rng, true)
        got, want = evaluate_instances(true, pred), brute_force(true, pred)
        for key, value in want.items():
            assert got[key] == pytest.approx(value), key


def test_overlap_table_is_the_joint_histogram():
    rng = np.random.default_rng(0)
    true, pred = random_labels(rng), random_labels(rng)
    ov = overlap_table(true, pred)
    for r, c, n in zip(ov.rows, ov.cols, ov.inter):
        assert n == np.sum((true == ov.true_ids[r]) & (pred == ov.pred_ids[c]))
    assert ov.inter.sum() == np.sum((true > 0) & (pred > 0))
    assert ov.true_area.sum() == np.sum(true > 0)


def test_pooled_row_sums_counts_before_ratios():
    true, pred = hand_case()
    ev = InstanceEvaluator()
    ev.add("a", true, pred)
    ev.add("b", true, true)
    rows = ev.rows()
    assert [r["image"] for r in rows] == ["a", "b", "mean", "all"]
    pooled, mean = rows[3], rows[2]
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (3, 2, 1)
    assert pooled["ap50"] == pytest.approx(3 / 6)
    assert pooled["seg"] == pytest.approx((0.6 + 0 + 1 + 1) / 4)
    assert mean["ap50"] == pytest.approx((0.25 + 1) / 2)
    assert mean["tp"] is None and mean["count_error"] == pytest.approx(0.5)
    assert all(set(r) == set(INSTANCE_COLUMNS) for r in rows)


def test_matches_stardist_matching():
    matching = pytest.importorskip("stardist.matching")
    rng = np.random.default_rng(11)
    ties = 0
    for _ in range(10):
        true = random_labels(rng)
        pred = perturbed(rng, true)
        ov = overlap_table(true, pred)
        iou = ov.iou
        counts = instance_counts(true, pred)
        ties += int(np.isin(iou, THRESHOLDS).any())
        for i, t in enumerate(THRESHOLDS):
            ref = matching.matching(true, pred, thresh=t)
            assert (counts.tp[i], counts.fp[i], counts.fn[i]) == (ref.tp, ref.fp, ref.fn)
        ref = matching.matching(true, pred, thresh=0.5)
        s = evaluate_instances(true, pred)
        assert s["pq"] == pytest.approx(ref.panoptic_quality)
        assert s["f1"] == pytest.approx(ref.f1)
    assert ties > 0  # some pair's IoU equals a threshold exactly: >= t is what is compared
