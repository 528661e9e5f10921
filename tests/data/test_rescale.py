"""Training images resized to one object scale (data.object_diameter)."""

import numpy as np
import pytest
from _helpers import disc

from unet_tf.data.labels import read_class_ids, read_instances
from unet_tf.data.layouts import ArraySample, DatasetSpec, instance_spec
from unet_tf.data.rescale import object_factor, rescale_to_diameter
from unet_tf.data.splits import TrainingData
from unet_tf.errors import UserInputError
from unet_tf.objects.scale import instance_areas, median_diameter


def _spec(ignore_value=None):
    base = DatasetSpec("folder", (0, 1), ("background", "object"), label_mode="instances", ignore_value=ignore_value)
    return instance_spec(base)


def _discs(shape, centres, r):
    labels = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, 1):
        labels[disc(shape, cy, cx, r)] = k
    return labels


def test_object_factor_is_target_over_median_diameter():
    labels = _discs((100, 100), [(20, 20), (20, 70), (70, 45)], 10)
    found = median_diameter(instance_areas(labels))  # 2 sqrt(317 / pi) for a digital disc of radius 10
    assert object_factor(labels, 10.0) == pytest.approx(10.0 / found)
    assert object_factor(np.zeros((8, 8), np.int32), 10.0) == 1.0  # no objects: kept as it is


def test_each_image_is_brought_to_the_target_diameter():
    small = ArraySample(
        "small", np.arange(80 * 80, dtype=np.uint16).reshape(80, 80), _discs((80, 80), [(20, 20), (55, 50)], 6)
    )
    large = ArraySample("large", np.ones((120, 120), np.uint8), _discs((120, 120), [(30, 30), (80, 80)], 20))
    data = TrainingData(_spec(), (small, large), (large,))
    lines = []
    out = rescale_to_diameter(data, 20.0, lines.append)
    for sample in (*out.train, *out.val):
        assert sample.image.shape == sample.label.shape
        assert median_diameter(instance_areas(sample.label)) == pytest.approx(20.0, rel=0.06)
        assert set(np.unique(sample.label)) == {0, 1, 2}  # nearest: no id invented or lost
    assert out.train[0].image.shape[0] > 80 and out.train[1].image.shape[0] < 120  # enlarged, shrunk
    assert out.train[0].image.dtype == np.uint16
    assert "resized to objects of 20 px" in lines[0]
    assert rescale_to_diameter(data, None) is data


def test_ignored_pixels_and_targets_follow_the_resize():
    labels = _discs((60, 60), [(15, 15), (40, 40)], 5)
    labels[:, :6] = 9  # unannotated strip
    sample = ArraySample("one", np.zeros((60, 60), np.uint8), labels)
    spec = _spec(ignore_value=9)
    out = rescale_to_diameter(TrainingData(spec, (sample,), (sample,)), 20.0)
    resized = out.train[0]
    assert resized.image.shape == (118, 118)  # factor 20 / 10.15 (a digital disc of radius 5 has 81 px)
    ids = read_class_ids(resized, spec)
    assert np.all(ids[:, :11] == 255) and not np.any(ids[:, 13:] == 255)
    assert np.unique(read_instances(resized, spec)).tolist() == [0, 1, 2]


def test_semantic_target_is_refused():
    base = DatasetSpec("tem", (0, 255), ("background", "fg"))
    sample = ArraySample("one", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    with pytest.raises(UserInputError, match="object_diameter"):
        rescale_to_diameter(TrainingData(base, (sample,), (sample,)), 20.0)
