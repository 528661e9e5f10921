"""How far percentiles from a strided row subsample are from exact ones (normalization 2 / 98 %).

Streaming prediction (``unet_tf.prediction.streaming``) uses exact percentiles for integer
images of up to 16 bits (a histogram of every pixel) and the rows ``0, s, 2s,
...`` only for float and 32-bit images. This script measures what the subsample
would cost on real and synthetic images: for each row stride, the largest
difference of the normalized values against ``percentile_normalize`` and the
share of pixels whose mask changes under a tiny random U-Net (base 4, depth 2,
3 classes; untrained, so it only shows whether decisions move).

    UNET_TF_DATA=/work/shared/data python bench/percentile_subsample.py
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unet_tf.data.normalize import percentile_normalize, stretch  # noqa: E402
from unet_tf.io.images import read_image  # noqa: E402
from unet_tf.synthetic import generate_tem_image  # noqa: E402

STRIDES = (2, 4, 8, 16, 32)


def images() -> dict[str, np.ndarray]:
    data = Path(os.environ.get("UNET_TF_DATA", "data"))
    found = {"GOWT1 01/t000.tif": read_image(data / "Fluo-N2DH-GOWT1/01/t000.tif")}
    for path in sorted(glob.glob(str(data / "isbi2012/train/image/*.png"))):
        found[f"isbi {Path(path).name}"] = read_image(path)
    found["TEM synthetic 2048 (uint16)"] = generate_tem_image(2048, seed=0)[0]
    return found


def tiny_predictor():
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.prediction.tiled import make_predict_fn, predict_tiled, probabilities_to_ids

    keras.utils.set_random_seed(0)
    fn = make_predict_fn(build_model(ModelConfig(base_filters=4, depth=2), 3))
    return lambda x: probabilities_to_ids(predict_tiled(fn, x, tile=256, overlap=32, size_divisor=4))


def main() -> None:
    found, predict = images(), tiny_predictor()
    print("| image | dtype | stride | max abs diff of normalized values | mask pixels changed |")
    print("|---|---|---|---|---|")
    for name, image in found.items():
        exact = percentile_normalize(image)
        exact_ids = predict(exact) if not name.startswith("isbi") or name.endswith("20.png") else None
        for stride in STRIDES:
            lo, hi = np.percentile(image[::stride], (2.0, 98.0))
            sub = stretch(image, lo, hi)
            changed = "" if exact_ids is None else f"{100 * np.mean(predict(sub) != exact_ids):.3f} %"
            print(f"| {name} | {image.dtype} | {stride} | {np.abs(sub - exact).max():.4f} | {changed} |")


if __name__ == "__main__":
    main()
