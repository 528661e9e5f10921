"""Scores: hand-computed counts, NumPy and streaming Keras metrics agree, and
the Keras metrics score the whole epoch, not a mean of batches."""

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from _helpers import as_bhwk, with_weight  # noqa: E402

from unet_tf.data.targets import IGNORE_ID  # noqa: E402
from unet_tf.evaluation.scores import confusion_counts, scores_from_counts, tversky_from_counts  # noqa: E402
from unet_tf.training.metrics import DiceScore, IoUScore, PixelAccuracy, split_weight  # noqa: E402


def foreground_mean(per_class):
    """Mean of a per-class score over classes 1..C-1, skipping NaN (NaN if none)."""
    fg = np.asarray(per_class, dtype=np.float64)[1:]
    fg = fg[~np.isnan(fg)]
    return float(fg.mean()) if fg.size else float("nan")


def onehot(ids, n_classes):
    return np.eye(n_classes, dtype="float32")[np.asarray(ids)]


# IoU = 1/3 case: truth and prediction each hold 2 pixels, 1 shared
T = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
P = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]])


def test_confusion_counts_hand_computed():
    t = np.array([[0, 1, 2], [2, 2, 0], [1, 0, 0]])
    p = np.array([[0, 1, 1], [2, 0, 0], [1, 0, 2]])
    tp, fp, fn, tn = confusion_counts(t, p, 3)
    # pairs (truth, prediction): (0,0) (1,1) (2,1) (2,2) (2,0) (0,0) (1,1) (0,0) (0,2)
    # class 0: truth 4 px, prediction 4 px, shared 3 -> tp 3, fp 1, fn 1, tn 4
    # class 1: truth 2 px, prediction 3 px, shared 2 -> tp 2, fp 1, fn 0, tn 6
    # class 2: truth 3 px, prediction 2 px, shared 1 -> tp 1, fp 1, fn 2, tn 5
    np.testing.assert_array_equal(tp, [3, 2, 1])
    np.testing.assert_array_equal(fp, [1, 1, 1])
    np.testing.assert_array_equal(fn, [1, 0, 2])
    np.testing.assert_array_equal(tn, [4, 6, 5])
    s = scores_from_counts(tp, fp, fn, tn)
    np.testing.assert_allclose(s["dice"], [6 / 8, 4 / 5, 2 / 5])
    np.testing.assert_allclose(s["iou"], [3 / 5, 2 / 3, 1 / 4])
    np.testing.assert_allclose(s["precision"], [3 / 4, 2 / 3, 1 / 2])
    np.testing.assert_allclose(s["recall"], [3 / 4, 2 / 2, 1 / 3])
    assert s["pixel_accuracy"] == pytest.approx(6 / 9)
    with pytest.raises(ValueError):
        confusion_counts(t, p + 1, 3)


def test_iou_one_third_numpy_and_keras():
    s = scores_from_counts(*confusion_counts(T, P, 2))
    assert s["iou"][1] == pytest.approx(1 / 3)
    assert s["dice"][1] == pytest.approx(1 / 2)
    iou, dice = IoUScore(2), DiceScore(2)
    for m in (iou, dice):
        m.update_state(as_bhwk(T), as_bhwk(P * 0.9))
    assert float(iou.result()) == pytest.approx(1 / 3, abs=1e-6)
    assert float(dice.result()) == pytest.approx(1 / 2, abs=1e-6)


def test_binary_threshold():
    p = as_bhwk([[0.2, 0.6, 0.6], [0, 0, 0], [0, 0, 0]])  # shared pixel at .6
    y = as_bhwk(T)
    strict = DiceScore(2, threshold=0.7)
    strict.update_state(y, p)
    assert float(strict.result()) == 0.0  # nothing predicted: tp = 0, fn = 2
    loose = DiceScore(2, threshold=0.5)
    loose.update_state(y, p)
    assert float(loose.result()) == pytest.approx(0.5)


def test_empty_class_is_nan_and_skipped():
    # class 2 absent from truth and prediction
    t = np.array([[0, 1], [1, 0]])
    p = np.array([[0, 1], [0, 0]])
    s = scores_from_counts(*confusion_counts(t, p, 3))
    assert math.isnan(s["dice"][2]) and math.isnan(s["iou"][2])
    assert foreground_mean(s["dice"]) == pytest.approx(2 / 3)  # class 1 only
    assert math.isnan(foreground_mean(np.array([1.0, np.nan])))

    y, q = onehot(t, 3)[None], onehot(p, 3)[None]
    mean_dice, dice2 = DiceScore(3), DiceScore(3, class_id=2)
    for m in (mean_dice, dice2):
        m.update_state(y, q)
    assert float(mean_dice.result()) == pytest.approx(2 / 3, abs=1e-6)
    assert math.isnan(float(dice2.result()))
    # binary with no foreground anywhere: undefined
    empty = DiceScore(2)
    empty.update_state(as_bhwk(np.zeros((2, 2))), as_bhwk(np.zeros((2, 2))))
    assert math.isnan(float(empty.result()))


def test_streaming_dice_is_dataset_level_not_batch_mean():
    # batch A: 1 fg pixel, found -> Dice 1
    ya = as_bhwk([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    pa = ya.copy()
    # batch B: 8 fg pixels, 1 found -> Dice 2 / (2 + 7) = 2/9
    yb = as_bhwk([[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    pb = as_bhwk([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    dice = DiceScore(2)
    dice.update_state(ya, pa)
    dice.update_state(yb, pb)
    # dataset: tp 2, fp 0, fn 7 -> 4 / 11; mean of batches would be (1 + 2/9) / 2
    t = np.concatenate([ya, yb]).astype(int)[..., 0]
    p = np.concatenate([pa, pb]).astype(int)[..., 0]
    expected = scores_from_counts(*confusion_counts(t, p, 2))["dice"][1]
    assert expected == pytest.approx(4 / 11)
    assert float(dice.result()) == pytest.approx(expected, abs=1e-6)
    assert float(dice.result()) != pytest.approx((1 + 2 / 9) / 2, abs=1e-3)
    dice.reset_state()
    dice.update_state(ya, pa)
    assert float(dice.result()) == pytest.approx(1.0)


def test_streaming_in_evaluate_batch_by_batch():
    ya = as_bhwk([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    yb = as_bhwk([[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    pb = as_bhwk([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    inp = keras.Input((3, 3, 1))
    model = keras.Model(inp, keras.layers.Identity()(inp))  # prediction = input
    model.compile(loss="mse", metrics=[DiceScore(2), IoUScore(2), PixelAccuracy(2)])
    logs = model.evaluate(np.concatenate([ya, pb]), np.concatenate([ya, yb]), batch_size=1, verbose=0, return_dict=True)
    assert logs["dice"] == pytest.approx(4 / 11, abs=1e-6)
    assert logs["iou"] == pytest.approx(2 / 9, abs=1e-6)
    assert logs["pixel_accuracy"] == pytest.approx(11 / 18, abs=1e-6)


def test_multiclass_streaming_matches_numpy():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, (3, 5, 5))
    noisy = np.where(rng.random(t.shape) < 0.4, rng.integers(0, 4, t.shape), t)
    probs = onehot(noisy, 4) * 0.7 + 0.075  # argmax = noisy
    y = onehot(t, 4)
    metrics = [DiceScore(4), IoUScore(4), PixelAccuracy(4)] + [DiceScore(4, class_id=c) for c in range(4)]
    for m in metrics:
        m.update_state(y[:2], probs[:2])
        m.update_state(y[2:], probs[2:])
    s = scores_from_counts(*confusion_counts(t, noisy, 4))
    assert float(metrics[0].result()) == pytest.approx(foreground_mean(s["dice"]), abs=1e-6)
    assert float(metrics[1].result()) == pytest.approx(foreground_mean(s["iou"]), abs=1e-6)
    assert float(metrics[2].result()) == pytest.approx(s["pixel_accuracy"], abs=1e-6)
    for c in range(4):
        assert float(metrics[3 + c].result()) == pytest.approx(s["dice"][c], abs=1e-6)


def test_scores_are_tversky_special_cases():
    tp, fp, fn = np.array([3.0]), np.array([2.0]), np.array([1.0])
    assert tversky_from_counts(tp, fp, fn, 0.5, 0.5)[0] == pytest.approx(6 / 9)
    assert tversky_from_counts(tp, fp, fn, 1.0, 1.0)[0] == pytest.approx(3 / 6)


def test_metric_config_round_trip():
    m = DiceScore(5, name="dice_myelinated_axon", threshold=0.4, class_id=2)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(m))
    assert type(clone) is DiceScore
    assert clone.get_config() == m.get_config()
    assert (clone.name, clone.n_classes, clone.class_id, clone.threshold) == ("dice_myelinated_axon", 5, 2, 0.4)
    with pytest.raises(ValueError):
        DiceScore(3, class_id=3)


# === Ignored pixels ===


def test_confusion_counts_leave_out_ignored_truth_pixels():
    t = np.array([[0, 1, 255], [1, 255, 0]])
    p = np.array([[0, 0, 1], [1, 1, 0]])  # predictions under 255 are anything
    # kept pairs (truth, prediction): (0,0) (1,0) (1,1) (0,0)
    # class 0: tp 2, fp 1, fn 0, tn 1; class 1: tp 1, fp 0, fn 1, tn 2
    tp, fp, fn, tn = confusion_counts(t, p, 2, ignore_id=IGNORE_ID)
    np.testing.assert_array_equal(tp, [2, 1])
    np.testing.assert_array_equal(fp, [1, 0])
    np.testing.assert_array_equal(fn, [0, 1])
    np.testing.assert_array_equal(tn, [1, 2])
    assert scores_from_counts(tp, fp, fn, tn)["pixel_accuracy"] == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="outside"):
        confusion_counts(t, p, 2)  # 255 is no class without ignore_id


@pytest.mark.parametrize("n_classes", [2, 4])
def test_keras_metrics_skip_ignored_pixels(n_classes):
    rng = np.random.default_rng(1)
    shape = (3, 6, 7)
    t = rng.integers(0, n_classes, shape)
    pred = rng.integers(0, n_classes, shape)
    ignored = rng.random(shape) < 0.3
    garbage = np.where(ignored, (pred + 1) % n_classes, pred)  # other predictions where ignored
    if n_classes == 2:
        y = t[..., None].astype("float32")
        probs = [a[..., None] * 0.8 + 0.1 for a in (pred, garbage)]
    else:
        y = onehot(t, n_classes)
        probs = [onehot(a, n_classes) * 0.7 + 0.075 for a in (pred, garbage)]
    y_w = with_weight(np.where(ignored[..., None], 0.0, y), np.where(ignored, 0.0, rng.uniform(0.5, 3, shape)))
    truth_ids = np.where(ignored, IGNORE_ID, t)
    s = scores_from_counts(*confusion_counts(truth_ids, pred, n_classes, ignore_id=IGNORE_ID))
    results = []
    for p in probs:
        metrics = [DiceScore(n_classes), IoUScore(n_classes), PixelAccuracy(n_classes)]
        for m in metrics:
            m.update_state(y_w[:2], p[:2])
            m.update_state(y_w[2:], p[2:])
        results.append([float(m.result()) for m in metrics])
    assert results[0] == results[1]  # predictions under ignored pixels change nothing
    np.testing.assert_allclose(
        results[0], [foreground_mean(s["dice"]), foreground_mean(s["iou"]), s["pixel_accuracy"]], atol=1e-6
    )
    full = PixelAccuracy(n_classes)
    full.update_state(y, probs[1])
    assert float(full.result()) != pytest.approx(results[0][2])  # the ignored pixels did matter


def test_metric_weight_channel_hand_computed():
    # truth 1 1 0 / prediction 1 0 1, third pixel ignored: tp 1, fn 1, fp 0 -> Dice 2/3, accuracy 1/2
    y = with_weight(as_bhwk([[1, 1, 0]]), [[[1.0, 4.0, 0.0]]])
    p = as_bhwk([[0.9, 0.1, 0.9]])
    dice, acc = DiceScore(2), PixelAccuracy(2)
    for m in (dice, acc):
        m.update_state(y, p)
    assert float(dice.result()) == pytest.approx(2 / 3)
    assert float(acc.result()) == pytest.approx(1 / 2)


def test_split_weight_reads_k_or_k_plus_one_channels():
    y = np.zeros((1, 2, 2, 3), "float32")
    targets, weight = split_weight(y, 3)
    assert targets is y and weight is None
    targets, weight = split_weight(y, 2)
    assert targets.shape == (1, 2, 2, 2) and weight.shape == (1, 2, 2)
    with pytest.raises(ValueError, match="3 channels for 1 output"):
        split_weight(y, 1)
