"""Object scale: equivalent diameters of hand-drawn objects, the factor's sources, resampling both ways."""

import math

import numpy as np
import pytest

from unet_tf.objects.scale import (
    ESTIMATE_LIMITS,
    ESTIMATE_TOLERANCE,
    SCALE_TOLERANCE,
    applied,
    choose_factor,
    component_areas,
    consistent_estimate,
    equivalent_diameters,
    instance_areas,
    median_diameter,
    pieces_per_object,
    resize,
    scaled_shape,
)


def disc(shape, centre, radius, value=1, out=None):
    """``out`` (or zeros of ``shape``) with a filled disc of ``value``: pixels whose centre is within ``radius``."""
    out = np.zeros(shape, np.int32) if out is None else out
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2] = value
    return out


def test_equivalent_diameter_of_hand_counted_shapes():
    # a 10 x 10 square: 100 px, the disc of 100 px has diameter 2 sqrt(100 / pi) = 11.2838
    assert equivalent_diameters([100])[0] == pytest.approx(11.2838, abs=1e-4)
    # the digital disc of radius 2: rows of 1, 3, 5, 3, 1 plus the 4 px at distance 2 = 13 px
    labels = disc((9, 9), (4, 4), 2)
    assert instance_areas(labels).tolist() == [13]
    assert median_diameter(instance_areas(labels)) == pytest.approx(2 * math.sqrt(13 / math.pi))
    # a disc of radius 10 has an equivalent diameter within 2 % of 20
    assert median_diameter(instance_areas(disc((32, 32), (15, 15), 10))) == pytest.approx(20, rel=0.02)


def test_median_over_objects_and_images_leaves_out_small_ones():
    labels = disc((64, 64), (10, 10), 3, 1)
    disc((64, 64), (30, 30), 6, 2, labels)
    disc((64, 64), (50, 50), 9, 3, labels)
    areas = instance_areas(labels)
    assert areas.tolist() == [29, 113, 253]  # 29, 113 and 253 px: counted from the drawing
    assert median_diameter(areas) == pytest.approx(2 * math.sqrt(113 / math.pi))  # the middle disc's
    assert median_diameter(areas, min_size=100) == pytest.approx(np.median(equivalent_diameters([113, 253])))
    assert median_diameter([]) is None and median_diameter([5, 7], min_size=10) is None
    assert instance_areas(np.full((4, 4), -1)).size == 0


def test_component_areas_per_class_touching_and_diagonal():
    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3] = 1  # 4 px of class 1
    ids[1:3, 3:5] = 2  # 4 px of class 2 touching it: another object
    ids[5, 5] = ids[6, 6] = 1  # diagonal neighbours: one 8-connected object of 2 px
    ids[7, 0] = 255  # ignored pixels are no class asked for
    assert sorted(component_areas(ids, [1, 2]).tolist()) == [2, 4, 4]
    assert sorted(component_areas(ids, [1], connectivity=4).tolist()) == [1, 1, 4]
    assert component_areas(ids, []).size == 0


def test_choose_factor_in_order():
    assert choose_factor(20.0, 0.5, diameter=40.0, pixel_size=0.25) == (0.5, "diameter")
    assert choose_factor(20.0, 0.5, pixel_size=0.25) == (0.5, "pixel size")
    assert choose_factor(20.0, None, pixel_size=0.25) == (None, "estimate")
    assert choose_factor(20.0, 0.5) == (None, "estimate")
    assert choose_factor(None, 0.5, pixel_size=1.0) == (2.0, "pixel size")
    assert choose_factor(None, None, diameter=40.0) == (1.0, "none")  # nothing to scale to
    assert choose_factor(None, None) == (1.0, "none")


def separate(d: float, n: int = 5, cut: int = 1) -> np.ndarray:
    """Instance labels of ``n`` discs of diameter ``d`` in a row, apart; each cut into ``cut`` touching vertical
    strips (a network cutting objects larger than its scale)."""
    step = int(2 * d) + 4
    labels = np.zeros((step, step * n), np.int32)
    for k in range(n):
        whole = disc(labels.shape, (step / 2, step * (k + 0.5)), d / 2) > 0
        cols = np.nonzero(whole.any(axis=0))[0]
        for piece, part in enumerate(np.array_split(cols, cut)):
            strip = np.zeros_like(whole)
            strip[:, part] = True
            labels[whole & strip] = k * cut + piece + 1
    return labels


def test_pieces_per_object():
    assert pieces_per_object(separate(20.0)) == 1.0 and pieces_per_object(separate(20.0, cut=3)) == 3.0
    assert pieces_per_object(np.zeros((4, 4), np.int32)) == 0.0


def test_the_pass_that_finds_whole_objects_of_the_models_diameter_wins():
    """Nuclei 61 px across, a model of 18 px. At x1 it cuts each into 11 touching strips of the area of an
    18 px disc: consistent-looking (implying ~x1) but cut, so left out; at x0.5 (30 px) and x0.25 (15 px) it
    finds whole nuclei, both implying ~x0.29; the x0.25 pass is closer to its own factor and wins."""
    cut_at_1 = separate(61.0, cut=11)
    passes = [(1.0, cut_at_1), (0.5, separate(30.5)), (0.25, separate(15.25))]
    factor, made_at = consistent_estimate(18.0, passes)
    assert made_at == 0.25 and factor == pytest.approx(0.25 * 18 / median_diameter(instance_areas(separate(15.25))))
    # without the rule the cut pass would win: its pieces are about the model's diameter
    pieces = median_diameter(instance_areas(cut_at_1))
    assert abs(math.log(18.0 / pieces)) < abs(
        math.log(0.25 * 18 / median_diameter(instance_areas(separate(15.25))) / 0.25)
    )
    assert consistent_estimate(18.0, [(1.0, separate(17.0)), (0.5, separate(8.5))]) == (
        pytest.approx(18 / median_diameter(instance_areas(separate(17.0)))),
        1.0,
    )
    # every pass cut: the least misfit of them all
    assert consistent_estimate(18.0, [(1.0, separate(40.0, cut=2))])[1] == 1.0
    assert consistent_estimate(18.0, [(1.0, np.zeros((8, 8), np.int32)), (0.5, separate(9.0))])[1] == 0.5
    assert consistent_estimate(18.0, [(1.0, separate(3.0))], min_size=10) is None  # every object under min_size


def test_whole_objects_between_two_passes_beat_separate_spots():
    """DSB2018 nuclei of ~101 px, a model of 18 px (measured: f4faa3a409 at x2): x1 finds separate spots of the
    model's size (not cut: they do not touch), implying x0.96; x0.5 and x0.25 find whole nuclei implying x0.18
    and x0.17, nearer to 0.25 than to 0.5. The x0.25 pass answers for x0.17 and, agreeing with x0.5 on the
    nuclei's diameter, wins over the spots."""
    passes = [(1.0, separate(18.8)), (0.5, separate(50.3)), (0.25, separate(26.2))]
    factor, made_at = consistent_estimate(18.0, passes)
    assert made_at == 0.25 and factor == pytest.approx(0.25 * 18 / median_diameter(instance_areas(separate(26.2))))
    assert 0.16 < factor < 0.19


def test_estimate_and_tolerance():
    labels = separate(20.0)
    d = median_diameter(instance_areas(labels))
    assert consistent_estimate(2 * d, [(1.0, labels)]) == (pytest.approx(2.0), 1.0)
    assert consistent_estimate(20 * d, [(1.0, labels)])[0] == ESTIMATE_LIMITS[1]
    assert consistent_estimate(d / 20, [(1.0, labels)])[0] == ESTIMATE_LIMITS[0]
    assert consistent_estimate(40.0, [(1.0, np.zeros((4, 4), np.int32))]) is None
    assert applied(1.0 + SCALE_TOLERANCE / 2) == 1.0 and applied(1.0 - SCALE_TOLERANCE / 2) == 1.0
    assert applied(1.2) == 1.2 and applied(0.5) == 0.5
    assert applied(0.94) == 0.94 and applied(0.94, ESTIMATE_TOLERANCE) == 1.0  # an estimate needs more than 10 %


@pytest.mark.parametrize("factor", [0.5, 0.37, 2.0, 3.3])
def test_resize_round_trip_keeps_shape_dtype_and_values(factor):
    rng = np.random.default_rng(0)
    shape = (37, 53)
    small = scaled_shape(shape, factor)
    assert small == (round(37 * factor), round(53 * factor))
    for dtype in (np.uint8, np.uint16, np.int32, np.float32, np.float64, bool):
        image = (rng.random(shape) * 200).astype(dtype)
        there = resize(image, small, "image")
        back = resize(there, shape, "image")
        assert there.shape == small and back.shape == shape and back.dtype == image.dtype
    labels = disc(shape, (18, 26), 12, 7)
    disc(shape, (5, 5), 4, 3, labels)
    back = resize(resize(labels, small, "nearest"), shape, "nearest")
    assert back.shape == shape and back.dtype == labels.dtype
    assert set(np.unique(back)) <= {0, 3, 7}  # nearest never invents a label
    if factor >= 1:  # enlarging first: nearest comes back exactly
        np.testing.assert_array_equal(back, labels)
    prob = rng.random((*shape, 1)).astype(np.float32)
    assert resize(prob, small, "linear").shape == (*small, 1)
    assert resize(rng.random((*shape, 3)).astype(np.float32), small, "linear").shape == (*small, 3)


def test_resize_image_averages_when_shrinking_and_keeps_a_flat_image_flat():
    image = np.zeros((4, 4), np.float32)
    image[:2, :2] = 4.0
    np.testing.assert_allclose(resize(image, (2, 2), "image"), [[4.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(resize(np.full((5, 7), 9, np.uint16), (11, 3), "image"), 9)
    assert resize(image, (4, 4), "image") is image
    with pytest.raises(ValueError, match="kind"):
        resize(image, (2, 2), "cubic")


def test_a_given_diameter_that_would_resize_beyond_8x_is_refused_in_one_line():
    from unet_tf.errors import UserInputError

    assert choose_factor(40.0, None, diameter=5.0) == (8.0, "diameter")
    with pytest.raises(
        UserInputError, match=r"`predict.diameter` 4 px: the model's objects are 40.0 px.*resized by 10"
    ):
        choose_factor(40.0, None, diameter=4.0)
    with pytest.raises(UserInputError, match=r"resized by 0.1 "):
        choose_factor(40.0, None, diameter=400.0)


def test_passes_that_agree_on_the_objects_size_outvote_one_that_finds_spots():
    """The GOWT1 case of a weak 18 px model: at x1 it finds separate spots of ~20 px inside 61 px nuclei
    (misfit 0.10, not touching, so not 'cut'); at x0.5 and x0.25 it finds the nuclei (about 60 px in the image's
    own px, agreeing): the x0.25 pass, misfit 0.11, wins over the lone x1 pass."""
    passes = [(1.0, separate(19.9, n=8)), (0.5, separate(29.9)), (0.25, separate(16.2))]
    factor, made_at = consistent_estimate(18.0, passes)
    assert made_at == 0.25 and factor == pytest.approx(0.25 * 18 / median_diameter(instance_areas(separate(16.2))))
    # at the model's scale the coarse passes find bloated specks (24 and 28 px in the image's px, agreeing with
    # each other) but far from the model's diameter: the x1 pass, the only one near it, wins
    passes = [(1.0, separate(18.0)), (0.5, separate(12.0)), (0.25, separate(7.0))]
    assert consistent_estimate(18.0, passes)[1] == 1.0
