"""The shipped `nuclei` model: found by name, and it segments nuclei it never saw at two scales."""

import numpy as np
import pytest

from unet_tf.evaluation.matching import InstanceEvaluator
from unet_tf.models.bundled import bundled_models


def blobs(diameter: float, n_side: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fluorescence-like nuclei: n_side x n_side smooth bright ellipses of about ``diameter`` px on a dark,
    noisy background (uint16), and their instance labels."""
    rng = np.random.default_rng(seed)
    step = int(round(2.2 * diameter))
    side = step * n_side
    yy, xx = np.mgrid[:side, :side].astype(np.float64)
    image = np.zeros((side, side))
    labels = np.zeros((side, side), np.int32)
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            k += 1
            cy, cx = (i + 0.5) * step + rng.uniform(-2, 2), (j + 0.5) * step + rng.uniform(-2, 2)
            a, b = diameter / 2 * rng.uniform(0.85, 1.15), diameter / 2 * rng.uniform(0.85, 1.15)
            r2 = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2
            labels[r2 <= 1] = k
            image += rng.uniform(0.6, 1.0) * np.clip(1.2 - r2, 0, 1) ** 0.5
    image = 200 + 3000 * image + rng.normal(0, 60, image.shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


@pytest.mark.skipif("nuclei" not in bundled_models(), reason="the nuclei model is not installed")
@pytest.mark.parametrize("diameter", [18.0, 45.0])
def test_nuclei_segments_unseen_blobs_at_its_scale_and_larger(diameter):
    import unet_tf

    model = unet_tf.load_model("nuclei")
    info = unet_tf.read_info(model)
    assert info.target == "instances" and info.object_diameter == pytest.approx(18.0, abs=1.0)
    assert info.test_images == () and info.data_dir is None
    image, truth = blobs(diameter)
    result = unet_tf.predict_image(model, image, tile=256, overlap=32)
    ev = InstanceEvaluator()
    ev.add("blobs", truth, result.instances)
    scores = ev.rows()[-1]
    assert scores["ap50"] >= 0.9, scores
    expected = info.object_diameter / diameter  # the estimate brings 45 px nuclei to the model's scale
    assert result.scale_factor == pytest.approx(expected, rel=0.2) or result.scale_factor == 1.0 == round(expected)
