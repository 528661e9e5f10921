"""The label helpers: checks, renumberings (which id becomes which), neighbourhoods; by hand on 3x3 images."""

import numpy as np
import pytest
from _helpers import disc

from unet_tf.errors import UserInputError
from unet_tf.objects.instances import label_components
from unet_tf.objects.labels import (
    as_label_image,
    check_labels,
    check_mask,
    index_by_id,
    renumber,
    renumber_by_position,
    renumber_if_sparse,
    structure,
)

LABELS = np.array([[0, 7, 7], [40, 40, 0], [2, 0, 0]])


def test_renumber_keeps_the_order_of_the_ids():
    out = renumber(LABELS)
    assert out.dtype == np.int32 and out.tolist() == [[0, 2, 2], [3, 3, 0], [1, 0, 0]]


def test_renumber_by_position_follows_the_first_pixels():
    out, n = renumber_by_position(LABELS)
    assert n == 3 and out.dtype == np.int32 and out.tolist() == [[0, 1, 1], [2, 2, 0], [3, 0, 0]]
    assert renumber_by_position(np.zeros((2, 2), np.uint16))[1] == 0


def test_renumber_if_sparse_only_renumbers_sparse_ids():
    assert renumber_if_sparse(LABELS) is LABELS
    sparse = LABELS * 1000
    out = renumber_if_sparse(sparse)
    assert out.dtype == np.int32 and out.tolist() == renumber(LABELS).tolist()


@pytest.mark.parametrize("scale", [1, 10**6])  # compact ids (counted) and sparse ones (sorted)
def test_index_by_id(scale):
    ids, areas, index = index_by_id(LABELS * scale)
    assert ids.tolist() == [2 * scale, 7 * scale, 40 * scale] and areas.tolist() == [1, 2, 2]
    assert index.tolist() == [[0, 2, 2], [3, 3, 0], [1, 0, 0]]


def test_structure():
    assert structure(8).tolist() == np.ones((3, 3), bool).tolist()
    assert structure(4).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match="connectivity"):
        structure(6)


def test_checks_name_the_image():
    assert check_labels(LABELS, "labels") is not None
    with pytest.raises(ValueError, match="seg: expected a 2-D integer label image, got shape \\(3,\\)"):
        check_labels(np.zeros(3, np.int32), "seg")
    with pytest.raises(UserInputError, match="frame 1: negative object id -40"):
        check_labels(-LABELS, "frame 1", UserInputError)
    with pytest.raises(ValueError, match="mask must be 2-D"):
        check_mask(np.zeros((2, 2, 2)), "mask")


def test_a_bool_mask_scores_as_its_components():
    mask = disc((40, 40), 10, 10, 6) | disc((40, 40), 28, 30, 6)
    out = as_label_image(mask, "true")
    assert out.dtype == np.int32 and np.array_equal(out, label_components(mask))
    with pytest.raises(UserInputError, match="pred label image: fractional ids"):
        as_label_image(np.array([[0.5]]), "pred")
