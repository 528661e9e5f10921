"""Wall time of a k-fold cross-validation run serially (this process, all cores) and as Dask tasks.

    python bench/bench_folds.py --scheduler "" local:2 --out runs/bench-folds

Six synthetic TEM images of 256 px, a base-16 depth-3 U-Net, patch 128, 2 epochs of 15 steps per fold (the
figures of BENCHMARKS.md "Round 10"). Each scheduler gets its own output folder, so no run is resumed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from unet_tf.ablation.folds import run_folds
from unet_tf.config import RunConfig, replace_config
from unet_tf.synthetic import write_tem_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scheduler", nargs="+", default=["", "local:2"], help='"" for serial, local:N, tcp://...')
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--out", default="runs/bench-folds")
    args = p.parse_args()
    data = Path(args.out) / "tem6_256"
    if not data.exists():
        write_tem_dataset(data, n_train=6, n_test=1, size=256, seed=0)
    cfg = replace_config(
        RunConfig(),
        data={"dataset": "tem", "data_dir": str(data), "patch_size": 128, "patches_per_image": 4},
        model={"base_filters": 16, "depth": 3},
        train={"epochs": 2, "steps_per_epoch": 15, "batch_size": 4},
    )
    for k, scheduler in enumerate(args.scheduler):
        t0 = time.perf_counter()
        summary = run_folds(
            cfg, args.folds, Path(args.out) / f"run-{k}", verbose=0, scheduler=scheduler or None, log=lambda _: None
        )
        metrics = summary["metrics"]
        print(
            f"scheduler={scheduler or 'serial'}: wall {time.perf_counter() - t0:.1f} s, fit per fold "
            f"{metrics['seconds']['mean']:.1f} s, val_dice {metrics['val_dice']['mean']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
