"""Instance metrics: hand cases, an independent brute-force implementation, stardist if installed."""

import math

import numpy as np
import pytest

from unet_tf.instance_metrics import (
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
    # IoU 0.6 counts at 0.50 and 0.55 only (strictly greater): (0.25 + 0.25) / 10.
    assert s["mean_ap"] == pytest.approx(0.05)
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
    """Pixel-set IoU of every pair, greedy matching (unique at IoU >= 0.5)."""
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
        for i, j in sorted(zip(*np.nonzero(iou > t)), key=lambda ij: -iou[ij]):
            if i not in used_t and j not in used_p:
                used_t.add(i), used_p.add(j)
        tps.append(len(used_t))
    aps = [tp / (t_ids.size + p_ids.size - tp) for tp in tps]
    matched50 = iou[iou > 0.5].sum()
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
    for _ in range(10):
        true = random_labels(rng)
        pred = perturbed(rng, true)
        ov = overlap_table(true, pred)
        iou = ov.iou
        counts = instance_counts(true, pred)
        for i, t in enumerate(THRESHOLDS):
            if np.any(iou == t):
                continue  # stardist counts IoU >= t, we count IoU > t
            ref = matching.matching(true, pred, thresh=t)
            assert (counts.tp[i], counts.fp[i], counts.fn[i]) == (ref.tp, ref.fp, ref.fn)
        if np.any(iou == 0.5):
            continue
        ref = matching.matching(true, pred, thresh=0.5)
        s = evaluate_instances(true, pred)
        assert s["pq"] == pytest.approx(ref.panoptic_quality)
        assert s["f1"] == pytest.approx(ref.f1)
