"""The plan from a fingerprint: hand-computed values, today's defaults at the measured scales, set values kept."""

import numpy as np
import pytest
from _helpers import disc

from unet_tf.config import RunConfig, replace_config
from unet_tf.data.layouts import ArraySample, DatasetSpec, instance_spec
from unet_tf.data.splits import TrainingData
from unet_tf.training.plan import apply_plan, fingerprint, plan, receptive_field


@pytest.mark.parametrize("model, depth", [("unet", 2), ("resunet", 2)])
def test_receptive_field_is_the_response_extent_of_the_built_network(model, depth):
    """One bright pixel through the network with positive weights: the response spans the receptive field."""
    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model

    net = build_model(ModelConfig(model=model, base_filters=2, depth=depth), 2)
    for layer in net.layers:
        for w in layer.weights:
            ones = "gamma" in w.path or "moving_variance" in w.path
            w.assign(np.full(w.shape, 0.1 if "kernel" in w.path else float(ones), "float32"))
    x = np.zeros((1, 256, 256, 1), "float32")
    x[0, 128, 128, 0] = 1.0
    response = np.abs(net.predict(x, verbose=0) - net.predict(np.zeros_like(x), verbose=0))[0, :, :, 0]
    cols = np.nonzero(response.max(axis=0) > 0)[0]
    assert cols.max() - cols.min() + 1 == receptive_field(model, depth)
    assert receptive_field("unet", 4) == 203 and receptive_field("resunet", 3) == 76


def _instances(n_side: int, diameter: float, shape=(200, 240)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    step = shape[0] / n_side
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            k += 1
            labels[disc(shape, (i + 0.5) * step, (j + 0.5) * step, diameter / 2)] = k
    return labels


def _data(diameter: float, shape=(200, 240), n_side=2, colour_file=None):
    spec = instance_spec(DatasetSpec("folder", (0, 1), ("background", "object"), label_mode="instances"))
    image = np.full(shape, 7, np.uint16)
    labels = _instances(n_side, diameter, shape)
    image[labels > 0] = 900
    sample = ArraySample("one", image, labels, source=colour_file)
    return TrainingData(spec, (sample,), (sample,))


def test_fingerprint_measures_the_images_and_objects():
    fp = fingerprint(_data(20.0))
    assert fp.n_images == 1 and fp.median_size == (200, 240) and fp.smallest_side == 200
    assert fp.n_objects == 4 and fp.object_diameter == pytest.approx(
        2 * np.sqrt(np.sum(disc((41, 41), 20, 20, 10)) / np.pi)
    )
    assert fp.dtype == "uint16" and fp.intensity == (7.0, 900.0) and fp.colour_files == 0
    assert fp.class_fractions[0] > 0.8 and sum(fp.class_fractions) == pytest.approx(1.0)
    assert fp.min_size == int(0.25 * np.sum(disc((41, 41), 20, 20, 10)))


@pytest.mark.parametrize(
    "diameter, patch, depth, boundary, sigma",
    [
        (20.0, 256, 4, 2, 5.0),  # measured scale: today's defaults
        (61.0, 256, 4, 2, 5.0),  # GOWT1 nuclei
        (6.0, 256, 4, 1, 3.0),  # tiny objects: 1 px boundary, sigma D / 2
        (96.0, 512, 4, 3, 8.0),  # large: boundary D / 32, sigma D / 12, patch 2^ceil(log2(4 D))
        (150.0, 1024, 5, 5, 12.5),  # 2 D = 300 > 203 px: depth 5 (411 px)
    ],
)
def test_plan_at_and_beyond_the_measured_scales(diameter, patch, depth, boundary, sigma):
    side = 1200 if diameter > 90 else 400
    fp = fingerprint(_data(diameter, (side, side), n_side=3 if diameter < 100 else 2))
    p = plan(fp, RunConfig())
    assert (p.patch_size, p.depth, p.boundary_width, p.border_sigma) == (patch, depth, boundary, sigma)
    assert set(p.sources.values()) == {"data"}


def test_set_values_are_kept_and_the_patch_fits_the_smallest_image():
    fp = fingerprint(_data(20.0, (100, 150)))
    assert plan(fp, RunConfig()).patch_size == 96  # the largest multiple of 16 within 100 px
    cfg = replace_config(
        RunConfig(), data={"patch_size": 64, "boundary_width": 3, "border_sigma": 4.0}, model={"depth": 2}
    )
    p = plan(fp, cfg)
    assert (p.patch_size, p.depth, p.boundary_width, p.border_sigma) == (64, 2, 3, 4.0)
    assert set(p.sources.values()) == {"set"}


def test_apply_plan_fills_the_settings_and_the_boundary_of_the_spec():
    data = _data(6.0, (300, 300), n_side=3)
    lines = []
    cfg, planned_data, fp, planned = apply_plan(RunConfig(), data, lines.append)
    assert (cfg.data.patch_size, cfg.model.depth, cfg.data.boundary_width, cfg.data.border_sigma) == (256, 4, 1, 3.0)
    assert planned_data.spec.boundary_width == 1 and data.spec.boundary_width == 2
    assert lines[0].startswith("fingerprint: 1 images, median 300x300 px, 9 objects of")
    assert lines[1].startswith("plan: patch 256 px (data), depth 4 (data; receptive field 203 px), boundary 1 px")
    assert planned.boundary_width == 1 and fp.n_objects == 9


def test_colour_files_are_counted(tmp_path):
    import cv2

    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 200  # blue in OpenCV's order: colour
    cv2.imwrite(str(tmp_path / "c.png"), rgb)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((20, 20, 3), 90, np.uint8))  # gray saved as RGB
    assert fingerprint(_data(20.0, colour_file=tmp_path / "c.png")).colour_files == 1
    assert fingerprint(_data(20.0, colour_file=tmp_path / "g.png")).colour_files == 0


def test_the_demo_data_plans_todays_defaults(tem_dir_factory):
    """The synthetic TEM set (128 px images here): objects within the measured range, so 2 px / 5 px and depth 4;
    the patch is cut to the 128 px images."""
    from unet_tf.data.splits import resolve_data

    cfg = replace_config(RunConfig(), data={"dataset": "tem", "data_dir": str(tem_dir_factory(3))})
    fp = fingerprint(resolve_data(cfg, log=lambda line: None))
    assert 10 <= fp.object_diameter <= 64
    p = plan(fp, cfg)
    assert (p.patch_size, p.depth, p.boundary_width, p.border_sigma) == (128, 4, 2, 5.0)
