"""Object scale on GOWT1 02 (full frames 052 055 072) with an instance model trained on 01, frames resized
0.5x / 1x / 2x: AP@0.5 pooled, with no rescaling, with the estimate, with the true diameter given.

    # an instance model on sequence 01 only (a folder holding 01/ and 01_GT/ of GOWT1), 14 minutes
    python train.py --dataset ctc --data-dir gowt1-01 --epochs 1000 --max-minutes 14 --steps-per-epoch 20 \
        --batch-size 8 --lr 0.002 --seed 0 --out runs/gowt1-01
    UNET_TF_DATA=../shared/data python bench/bench_scale.py runs/gowt1-01/best.keras 1 0.5 2
"""

import glob
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unet_tf.evaluation.matching import InstanceEvaluator
from unet_tf.models.file import load_model_and_info
from unet_tf.objects.scale import instance_areas, median_diameter, resize, scaled_shape
from unet_tf.prediction.image import engine, predict_image

DATA = os.path.join(os.environ.get("UNET_TF_DATA", "data"), "Fluo-N2DH-GOWT1")


class Model:
    def __init__(self, fn, info):
        self.fn, self.info = fn, info

    def __call__(self, batch):
        return self.fn(batch)


def main() -> None:
    keras_model, info = load_model_and_info(sys.argv[1])
    fn = engine(keras_model)[0]
    train_areas = np.concatenate(
        [instance_areas(tifffile.imread(f)) for f in sorted(glob.glob(f"{DATA}/01_GT/SEG/*.tif"))]
    )
    d01 = median_diameter(train_areas)
    print(
        f"model: min_size {info.min_size}, 01 median diameter {d01:.2f} px over {len(train_areas)} nuclei", flush=True
    )

    scaled_model = Model(fn, replace(info, object_diameter=round(d01, 3)))
    plain_model = Model(fn, replace(info, object_diameter=None))
    frames = ("052", "055", "072")
    data = [
        (tifffile.imread(f"{DATA}/02/t{t}.tif"), tifffile.imread(f"{DATA}/02_GT/SEG/man_seg{t}.tif")) for t in frames
    ]
    d02 = median_diameter(np.concatenate([instance_areas(g) for _, g in data]))
    print(f"02 full frames: median diameter {d02:.2f} px", flush=True)
    for s in (float(a) for a in sys.argv[2:] or (1, 0.5, 2)):
        for mode in ("none", "estimate", "diameter"):
            ev, t0, factors = InstanceEvaluator(), time.perf_counter(), []
            for t, (image, truth) in zip(frames, data):
                shape = scaled_shape(image.shape, s)
                im, gt = resize(image, shape, "image"), resize(truth, shape, "nearest")
                if mode == "none":
                    r = predict_image(plain_model, im)
                elif mode == "estimate":
                    r = predict_image(scaled_model, im)
                else:
                    r = predict_image(scaled_model, im, diameter=d02 * s)
                factors.append(r.scale_factor)
                ev.add(t, gt, r.instances)
            row = [x for x in ev.rows() if x["image"] == "all"][0]
            print(
                f"scale {s:g} {mode:9s} AP50 {row['ap50']:.3f} meanAP {row['mean_ap']:.3f} SEG {row['seg']:.3f} "
                f"n_pred {row['n_pred']} n_true {row['n_true']} factors {[round(f, 3) for f in factors]} "
                f"{(time.perf_counter() - t0) / 3:.1f} s/frame",
                flush=True,
            )


if __name__ == "__main__":
    main()
