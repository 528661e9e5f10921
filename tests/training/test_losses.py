"""Losses: hand-computed numbers, agreement with Keras where they coincide,
finite gradients and a save/load round trip of a compiled model."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from _helpers import as_bhwk, with_weight  # noqa: E402

from unet_tf.config import LOSS_NAMES  # noqa: E402
from unet_tf.errors import UserInputError  # noqa: E402
from unet_tf.training.losses import (  # noqa: E402  # noqa: E402
    CombinedLoss,
    Dice,
    FocalTversky,
    Tversky,
    WeightedBCE,
    WeightedCategoricalCE,
    class_weights_from_fractions,
    make_loss,
    pos_weight_from_fraction,
    soft_tversky_index,
)
from unet_tf.training.metrics import DiceScore  # noqa: E402

EPS = 1e-7  # keras.config.epsilon(): the probability clip of the CE losses


# 3x3 binary case: TP = 2, FP = 3, FN = 1
Y3 = as_bhwk([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
P3 = as_bhwk([[1, 1, 0], [1, 1, 1], [0, 0, 0]])


def random_binary(seed, shape=(2, 5, 6, 1)):
    rng = np.random.default_rng(seed)
    y = (rng.random(shape) < 0.3).astype("float32")
    p = rng.uniform(0.01, 0.99, shape).astype("float32")
    return y, p


def random_onehot(seed, shape=(2, 4, 5), n_classes=3):
    rng = np.random.default_rng(seed)
    y = np.eye(n_classes, dtype="float32")[rng.integers(0, n_classes, shape)]
    logits = rng.normal(size=shape + (n_classes,))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return y, p.astype("float32")


# --- Tversky family: hand-computed -------------------------------------------


def test_tversky_hand_computed_hard_3x3():
    # TI = TP / (TP + .3 FP + .7 FN) = 2 / (2 + 0.9 + 0.7) = 2 / 3.6 -> loss 1 - 5/9 = 4/9
    assert float(Tversky(0.3, 0.7, smooth=0.0)(Y3, P3)) == pytest.approx(4 / 9, abs=1e-6)
    # smooth = 1: (2 + 1) / (3.6 + 1) = 3 / 4.6 -> loss 1.6 / 4.6
    assert float(Tversky(0.3, 0.7, smooth=1.0)(Y3, P3)) == pytest.approx(1.6 / 4.6, abs=1e-6)
    # alpha weighs FP, beta FN: swapping them gives 2 / (2 + 2.1 + 0.3) = 2 / 4.4
    assert float(Tversky(0.7, 0.3, smooth=0.0)(Y3, P3)) == pytest.approx(1 - 2 / 4.4, abs=1e-6)


def test_tversky_hand_computed_soft_2x2():
    y = as_bhwk([[1, 1], [0, 0]])
    p = as_bhwk([[0.8, 0.4], [0.5, 0.0]])
    # TP = .8 + .4 = 1.2; FP = .5; FN = .2 + .6 = .8
    # TI = 1.2 / (1.2 + .3*.5 + .7*.8) = 1.2 / 1.91
    assert float(Tversky(0.3, 0.7, smooth=0.0)(y, p)) == pytest.approx(1 - 1.2 / 1.91, abs=1e-6)
    # Dice = 2*1.2 / (2*1.2 + .5 + .8) = 2.4 / 3.7
    assert float(Dice(smooth=0.0)(y, p)) == pytest.approx(1 - 2.4 / 3.7, abs=1e-6)
    # focal: (1 - TI) ** 0.75
    ft = FocalTversky(0.3, 0.7, gamma=0.75, smooth=0.0)(y, p)
    assert float(ft) == pytest.approx((1 - 1.2 / 1.91) ** 0.75, abs=1e-6)


def test_soft_tversky_index_is_per_channel_over_batch():
    y, p = random_onehot(0)
    ti = np.asarray(soft_tversky_index(y, p, 0.3, 0.7, smooth=1.0))
    assert ti.shape == (3,)
    tp = (y * p).sum((0, 1, 2))
    fp = ((1 - y) * p).sum((0, 1, 2))
    fn = (y * (1 - p)).sum((0, 1, 2))
    np.testing.assert_allclose(ti, (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1), rtol=1e-5)


def test_multiclass_background_handling():
    y, p = random_onehot(1)
    ti = np.asarray(soft_tversky_index(y, p, 0.3, 0.7, smooth=1.0))
    assert float(Tversky()(y, p)) == pytest.approx(1 - ti[1:].mean(), abs=1e-6)
    with_bg = Tversky(include_background=True)(y, p)
    assert float(with_bg) == pytest.approx(1 - ti.mean(), abs=1e-6)


# --- agreement with Keras ----------------------------------------------------


def test_dice_equals_keras_dice_binary():
    y, p = random_binary(2)
    ours = Dice(smooth=0.0)(y, p)
    ref = keras.losses.Dice()(y, p)  # axis=None: one Dice over everything
    assert float(ours) == pytest.approx(float(ref), abs=1e-5)


def test_dice_equals_keras_dice_multiclass_with_background():
    y, p = random_onehot(3)
    ours = Dice(smooth=0.0, include_background=True)(y, p)
    # per-channel Dice over batch and space, then the mean over channels
    ref = keras.losses.Dice(axis=(0, 1, 2))(y, p)
    assert float(ours) == pytest.approx(float(ref), abs=1e-5)


@pytest.mark.parametrize("ab", [0.5, 1.0])
def test_tversky_equals_keras_tversky_symmetric(ab):
    # Only alpha == beta is compared: Keras <= 3.15 applies alpha to false
    # negatives and beta to false positives (the reverse of Salehi et al.);
    # the asymmetric convention is pinned by the hand-computed tests above.
    y, p = random_binary(4)
    ours = Tversky(ab, ab, smooth=0.0)(y, p)
    ref = keras.losses.Tversky(alpha=ab, beta=ab)(y, p)
    assert float(ours) == pytest.approx(float(ref), abs=1e-5)


def test_weighted_bce_unit_weight_equals_keras():
    y, p = random_binary(5)
    assert float(WeightedBCE(1.0)(y, p)) == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, p)), abs=1e-6)


def test_weighted_bce_matches_numpy_formula():
    y, p = random_binary(6)
    w = 4.0
    pc = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    expected = -np.mean(w * y * np.log(pc) + (1 - y) * np.log(1 - pc))
    assert float(WeightedBCE(w)(y, p)) == pytest.approx(expected, rel=1e-5)


def test_weighted_bce_hand_computed():
    # one positive pixel at p = .5 and one negative at p = .5, pos_weight 3:
    # (3 ln 2 + ln 2) / 2 = 2 ln 2
    y = as_bhwk([[1, 0]])
    p = as_bhwk([[0.5, 0.5]])
    assert float(WeightedBCE(3.0)(y, p)) == pytest.approx(2 * np.log(2), rel=1e-6)


def test_weighted_categorical_ce_matches_numpy_formula():
    y, p = random_onehot(7)
    w = np.array([0.5, 2.0, 7.0])
    pc = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    expected = -np.mean((w * y * np.log(pc)).sum(-1))
    assert float(WeightedCategoricalCE(w)(y, p)) == pytest.approx(expected, rel=1e-5)
    assert float(WeightedCategoricalCE()(y, p)) == pytest.approx(
        float(keras.losses.CategoricalCrossentropy()(y, p)), abs=1e-6
    )


def test_combined_loss_is_weighted_sum_of_parts():
    y, p = random_binary(8)
    bce, tv = WeightedBCE(2.0), Tversky(0.3, 0.7)
    combo = CombinedLoss([bce, tv], [0.3, 2.0])
    assert combo.name == "bce_tversky"  # "+" is not allowed in a TF name scope
    expected = 0.3 * float(bce(y, p)) + 2.0 * float(tv(y, p))
    assert float(combo(y, p)) == pytest.approx(expected, rel=1e-6)


# --- make_loss and helpers ---------------------------------------------------


def test_make_loss_unknown_name_lists_valid_names():
    with pytest.raises(UserInputError) as err:
        make_loss("dcie", 2)
    for name in LOSS_NAMES:
        assert name in str(err.value)


def test_make_loss_builds_the_named_losses():
    auto2 = make_loss("auto", 2, alpha=0.2, beta=0.8, pos_weight=5.0)
    assert isinstance(auto2, CombinedLoss)
    bce, tv = auto2.losses
    assert isinstance(bce, WeightedBCE) and bce.pos_weight == 5.0
    assert isinstance(tv, Tversky) and (tv.alpha, tv.beta) == (0.2, 0.8)

    auto5 = make_loss("auto", 5, class_weights=[1, 2, 3, 4, 5])
    ce, tv = auto5.losses
    assert isinstance(ce, WeightedCategoricalCE) and ce.class_weights == (1, 2, 3, 4, 5)
    assert type(tv) is Tversky

    assert type(make_loss("dice", 3)) is Dice
    assert type(make_loss("focal_tversky", 2)) is FocalTversky
    assert isinstance(make_loss("ce", 2), WeightedBCE)  # ce/bce: the task's CE
    assert isinstance(make_loss("bce", 4), WeightedCategoricalCE)
    assert [type(part) for part in make_loss("CE + Dice", 3).losses] == [WeightedCategoricalCE, Dice]
    # binary: class weights [w0, w1] become pos_weight w1 / w0
    assert make_loss("bce", 2, class_weights=[0.5, 2.0]).pos_weight == 4.0


def test_balance_helpers():
    assert pos_weight_from_fraction(0.2) == pytest.approx(4.0)
    assert pos_weight_from_fraction(0.001) == 20.0  # capped
    assert pos_weight_from_fraction(0.0, cap=7.0) == 7.0
    # median of (.7, .2, .1) = .2 -> (.2/.7, 1, 2); .001 -> capped at 10; absent -> 1
    w = class_weights_from_fractions([0.7, 0.2, 0.1])
    np.testing.assert_allclose(w, [0.2 / 0.7, 1.0, 2.0])
    w = class_weights_from_fractions([0.899, 0.1, 0.001, 0.0])
    np.testing.assert_allclose(w, [0.1 / 0.899, 1.0, 10.0, 1.0])
    with pytest.raises(ValueError):
        pos_weight_from_fraction(1.5)


# --- gradients ---------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_gradient_finite_at_saturated_predictions(name, n_classes):
    loss = make_loss(name, n_classes, pos_weight=3.0)
    ids = np.array([[0, 1], [1, 0]]) if n_classes == 2 else np.array([[0, 1], [2, 0]])
    if n_classes == 2:
        y = as_bhwk(ids)
    else:
        y = np.eye(n_classes, dtype="float32")[ids][None]
    for p0 in (y, 1.0 - y if n_classes == 2 else np.roll(y, 1, axis=-1)):  # perfect, all wrong
        p = tf.Variable(p0)
        with tf.GradientTape() as tape:
            value = loss(y, p)
        grad = tape.gradient(value, p)
        assert np.isfinite(float(value))
        assert np.all(np.isfinite(grad.numpy()))


# --- serialization -----------------------------------------------------------


def test_loss_configs_round_trip():
    for loss in (
        make_loss("auto", 2, pos_weight=3.0),
        make_loss("ce+dice", 4, class_weights=[1, 2, 3, 4]),
        FocalTversky(0.4, 0.6, gamma=0.5, smooth=0.5),
    ):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(clone) is type(loss)
        assert clone.get_config() == loss.get_config()


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compiled_model_reloads_with_same_loss(tmp_path):
    inp = keras.Input((6, 6, 1))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="head")(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=make_loss("auto", 2, pos_weight=3.0), metrics=[DiceScore(2)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 1)).astype("float32")
    y = (rng.random((2, 6, 6, 1)) < 0.4).astype("float32")
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # compile=True
    assert isinstance(loaded.loss, CombinedLoss)
    assert loaded.loss.get_config() == model.loss.get_config()
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-6)
    assert after["dice"] == pytest.approx(before["dice"], rel=1e-6)


# --- weight channel: border weights and ignored pixels ------------------------


def test_weight_two_doubles_that_pixels_cross_entropy():
    # y = 1, 0 at p = .5, .8; per pixel -ln .5 = ln 2 and -ln .2 = ln 5
    y = as_bhwk([[1, 0]])
    p = as_bhwk([[0.5, 0.8]])
    plain = float(WeightedBCE()(with_weight(y, [[[1.0, 1.0]]]), p))
    doubled = float(WeightedBCE()(with_weight(y, [[[2.0, 1.0]]]), p))
    assert plain == pytest.approx((np.log(2) + np.log(5)) / 2, rel=1e-6)
    assert doubled == pytest.approx((2 * np.log(2) + np.log(5)) / 2, rel=1e-6)
    # categorical: the same two pixels as one-hot [1-y, y] with softmax-like probabilities
    y2 = np.concatenate([1 - y, y], -1)
    p2 = np.concatenate([1 - p, p], -1)
    assert float(WeightedCategoricalCE()(with_weight(y2, [[[2.0, 1.0]]]), p2)) == pytest.approx(
        (2 * np.log(2) + np.log(5)) / 2, rel=1e-6
    )


def test_ignored_pixels_count_in_no_term_hand_computed():
    # pixels: (y, p, w) = (1, .5, 1), (0, .9, 0 = ignored), (1, .5, 2)
    y = with_weight(as_bhwk([[1, 0, 1]]), [[[1.0, 0.0, 2.0]]])
    p = as_bhwk([[0.5, 0.9, 0.5]])
    # CE: (1 * ln 2 + 2 * ln 2) / 2 kept pixels
    assert float(WeightedBCE()(y, p)) == pytest.approx(1.5 * np.log(2), rel=1e-6)
    # pos_weight 3 multiplies the positive pixels: (3 ln 2 + 2 * 3 ln 2) / 2
    assert float(WeightedBCE(3.0)(y, p)) == pytest.approx(4.5 * np.log(2), rel=1e-6)
    # overlap: the weight is a 0/1 mask. TP = .5 + .5 = 1, FP = 0, FN = 1 -> Dice 2 / 3
    assert float(Dice(smooth=0.0)(y, p)) == pytest.approx(1 / 3, abs=1e-6)
    assert float(Tversky(0.3, 0.7, smooth=0.0)(y, p)) == pytest.approx(1 - 1 / 1.7, abs=1e-6)
    # all pixels ignored: the CE is 0, not NaN
    none = with_weight(as_bhwk([[1, 0]]), [[[0.0, 0.0]]])
    assert float(WeightedBCE()(none, as_bhwk([[0.2, 0.7]]))) == 0.0


def test_tversky_with_weight_channel_hand_computed_3x3():
    # Y3/P3 (TP 2, FP 3, FN 1) with the FP at (1, 0) ignored and a weight 5 on a TP:
    # TP 2, FP 2, FN 1 -> TI = 2 / (2 + .6 + .7)
    w = np.ones((1, 3, 3), "float32")
    w[0, 1, 0], w[0, 0, 0] = 0.0, 5.0
    got = float(Tversky(0.3, 0.7, smooth=0.0)(with_weight(Y3, w), P3))
    assert got == pytest.approx(1 - 2 / 3.3, abs=1e-6)


def weighted_batch(n_classes, seed=0, shape=(2, 5, 6)):
    """Targets with a weight channel (about 30 % ignored), and two predictions that
    differ only on the ignored pixels."""
    rng = np.random.default_rng(seed + 1000)  # not the draws of random_binary/random_onehot
    ignored = rng.random(shape) < 0.3
    if n_classes == 2:
        y, p = random_binary(seed, shape + (1,))
        garbage = rng.uniform(0.01, 0.99, p.shape).astype("float32")
    else:
        y, p = random_onehot(seed, shape, n_classes)
        garbage = np.roll(p, 1, axis=-1)
    y = np.where(ignored[..., None], 0.0, y)
    weight = np.where(ignored, 0.0, rng.uniform(0.5, 4.0, shape))
    return with_weight(y, weight), p, np.where(ignored[..., None], garbage, p), ~ignored


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_predictions_under_ignored_pixels_change_no_loss(name, n_classes):
    y, p, p_garbage, kept = weighted_batch(n_classes, seed=n_classes)
    assert not np.allclose(p, p_garbage)
    loss = make_loss(name, n_classes, pos_weight=3.0)
    assert float(loss(y, p)) == pytest.approx(float(loss(y, p_garbage)), rel=1e-6)
    pv = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = loss(y, pv)
    grad = tape.gradient(value, pv).numpy()
    assert np.all(grad[~kept] == 0) and np.any(grad[kept] != 0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_weighted_losses_match_numpy_over_kept_pixels(n_classes):
    y, p, _, kept = weighted_batch(n_classes, seed=10 + n_classes)
    k = y.shape[-1] - 1
    t, w = y[..., :k].astype(np.float64), y[..., k].astype(np.float64)
    pc = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    if n_classes == 2:
        ce_map = -(3.0 * t * np.log(pc) + (1 - t) * np.log(1 - pc))[..., 0]
        ce = WeightedBCE(3.0)
    else:
        cw = np.array([0.5, 2.0, 7.0])
        ce_map = -(cw * t * np.log(pc)).sum(-1)
        ce = WeightedCategoricalCE(cw)
    assert float(ce(y, p)) == pytest.approx((w * ce_map).sum() / kept.sum(), rel=1e-5)
    # Dice over the kept pixels only (the foreground channels)
    fg = slice(0, 1) if n_classes == 2 else slice(1, None)
    tk, pk = t[kept][:, fg], p.astype(np.float64)[kept][:, fg]
    tp, fp, fn = (tk * pk).sum(0), ((1 - tk) * pk).sum(0), (tk * (1 - pk)).sum(0)
    expected = 1 - np.mean((tp + 1) / (tp + 0.5 * fp + 0.5 * fn + 1))  # smooth 1
    assert float(Dice()(y, p)) == pytest.approx(expected, rel=1e-5)


def test_weight_channel_of_ones_gives_the_old_values_exactly():
    for n_classes in (2, 3):
        y, p = random_binary(20) if n_classes == 2 else random_onehot(20)
        ones = with_weight(y, np.ones(y.shape[:-1]))
        for name in ("auto", "ce", "dice", "focal_tversky"):
            loss = make_loss(name, n_classes, pos_weight=2.0)
            assert float(loss(ones, p)) == float(loss(y, p)), (name, n_classes)


def test_wrong_channel_count_is_refused():
    y, p = random_binary(21)
    with pytest.raises(ValueError, match="3 channels for 1 output"):
        WeightedBCE()(np.concatenate([y, y, y], -1), p)


def test_configs_saved_before_the_weight_channel_still_load():
    # serialized by the code before this change (unet_tf 'auto' loss, 2 classes, pos_weight 3)
    old = {
        "module": "unet_tf.losses",
        "class_name": "CombinedLoss",
        "registered_name": "unet_tf>CombinedLoss",
        "config": {
            "name": "bce_tversky",
            "reduction": "sum_over_batch_size",
            "weights": [1.0, 1.0],
            "losses": [
                {
                    "module": "unet_tf.losses",
                    "class_name": "WeightedBCE",
                    "registered_name": "unet_tf>WeightedBCE",
                    "config": {"name": "bce", "reduction": "sum_over_batch_size", "pos_weight": 3.0},
                },
                # Tversky lived in unet_tf.losses then: the registered name finds it wherever it lives now
                {
                    "module": "unet_tf.losses",
                    "class_name": "Tversky",
                    "registered_name": "unet_tf>Tversky",
                    "config": {
                        "name": "tversky",
                        "reduction": "sum_over_batch_size",
                        "alpha": 0.3,
                        "beta": 0.7,
                        "smooth": 1.0,
                        "include_background": False,
                    },
                },
            ],
        },
    }
    loss = keras.saving.deserialize_keras_object(old)
    assert isinstance(loss, CombinedLoss) and [type(p) for p in loss.losses] == [WeightedBCE, Tversky]
    y, p = random_binary(22)
    assert float(loss(y, p)) == pytest.approx(float(make_loss("auto", 2, pos_weight=3.0)(y, p)), rel=1e-7)


def test_channel_count_known_only_at_run_time():
    # a tf.function retraced with relaxed shapes sees y_true as [None, None, None, None]
    y, p, _, _ = weighted_batch(2, seed=30)
    loss = make_loss("auto", 2, pos_weight=2.0)
    dice = DiceScore(2)
    relaxed = tf.function(
        lambda yt, yp: (loss(yt, yp), dice.update_state(yt, yp)),
        input_signature=[tf.TensorSpec([None] * 4), tf.TensorSpec([None, None, None, 1])],
    )
    for target in (y, y[..., :1]):  # with and without the weight channel
        dice.reset_state()
        got = float(relaxed(target, p)[0])
        eager = DiceScore(2)
        eager.update_state(target, p)
        assert got == pytest.approx(float(loss(target, p)), rel=1e-6)
        assert float(dice.result()) == pytest.approx(float(eager.result()), rel=1e-6)
