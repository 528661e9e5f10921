"""ISBI 2012 hold-out benchmark: train on 00-24 (validation from those), test on 25-29.

    python bench/bench_isbi.py --models unet resunet --minutes 20

Each model trains for --minutes of wall time through train.py (--holdout 5),
then predict.py evaluates best.keras on 25-29. Prints a Markdown table of
membrane Dice, IoU and pixel accuracy (per-image means over 25-29).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unet_tf.cli.predict import main as predict_main  # noqa: E402
from unet_tf.cli.train import main as train_main  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("UNET_TF_DATA", "../shared/data"), "isbi2012"))
    p.add_argument("--models", nargs="+", default=["unet", "resunet"])
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--out", default="runs/bench-isbi")
    p.add_argument("--extra", default="", help="more train.py flags, e.g. '--upsampling bilinear'")
    args = p.parse_args()
    rows = []
    for model in args.models:
        run = Path(args.out) / model
        flags = [
            "--dataset",
            "isbi2012",
            "--data-dir",
            args.data_dir,
            "--holdout",
            "5",
            "--model",
            model,
            "--base-filters",
            str(args.base_filters),
            "--epochs",
            "1000",
            "--max-minutes",
            str(args.minutes),
            "--out",
            str(run),
            "--quiet",
            *args.extra.split(),
        ]
        if not (run / "summary.json").exists():
            if train_main(flags) != 0:
                return 1
        if predict_main(["--weights", str(run / "best.keras"), "--out", str(run / "test"), "--no-overlay"]) != 0:
            return 1
        summary = json.loads((run / "summary.json").read_text())
        with open(run / "test" / "metrics.csv") as f:
            mean = next(r for r in csv.DictReader(f) if r["image"] == "mean" and r["class"] == "membrane")
        rows.append((model, summary, mean))
    print("\n| model | params | epochs | train s | patches/s | membrane Dice | IoU | pixel accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for model, s, m in rows:
        print(
            f"| {model} (base {args.base_filters}) | {s['parameters']:,} | {s['epochs_run']} | {s['wall_seconds']:.0f} "
            f"| {s['train_patches_per_second']:.2f} | {float(m['dice']):.3f} | {float(m['iou']):.3f} "
            f"| {float(m['pixel_accuracy']):.3f} |"
        )
    print(f"\ncommand: python bench/bench_isbi.py --models {' '.join(args.models)} --minutes {args.minutes:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
