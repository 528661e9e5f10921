"""The foreground-threshold calibration of an instance model, on the validation images of its recipe.

    export UNET_TF_DATA=../shared/data
    python bench/bench_calibration.py --weights nuclei --config bench/recipes/nuclei.yaml \
        --data-dir ../shared/data/dsb2018_stage1_train --out runs/bench-calibration

The recipe's data settings (hold-out, validation fraction, seed, object diameter) give the same validation
images ``train.py`` chose; a copy of the model is calibrated in ``--out`` (``calibration.csv`` beside it), as
training does at its end (:mod:`unet_tf.training.calibration`); the model given is not changed. Prints the
AP@0.5 / mean AP of every threshold as Markdown.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from unet_tf.config import load_config
from unet_tf.data.rescale import rescale_to_diameter
from unet_tf.data.splits import resolve_data
from unet_tf.models.bundled import resolve_weights
from unet_tf.training.calibration import calibrate_model_file


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="nuclei", help="a model file or bundled name (default nuclei)")
    p.add_argument("--config", required=True, help="the model's training recipe (YAML)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", type=Path, default=Path("runs/bench-calibration"))
    args = p.parse_args(argv)
    cfg = load_config(args.config, data_dir=args.data_dir)
    data = resolve_data(cfg)
    data = rescale_to_diameter(data, cfg.data.object_diameter)
    args.out.mkdir(parents=True, exist_ok=True)
    copy = args.out / "model.keras"
    shutil.copyfile(resolve_weights(args.weights), copy)
    calibration = calibrate_model_file(copy, data.val, data.spec)
    print(f"\n{len(data.val)} validation images, {calibration.objects} objects\n")
    print("| foreground threshold | AP@0.5 | mean AP 0.5:0.95 |\n|---|---|---|")
    for threshold, (ap50, mean_ap) in calibration.scores.items():
        mark = " (chosen)" if threshold == calibration.threshold else ""
        print(f"| {threshold:g}{mark} | {ap50:.3f} | {mean_ap:.3f} |")


if __name__ == "__main__":
    main()
