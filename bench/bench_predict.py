"""Benchmark full-resolution tiled prediction: wall time, peak memory, overhead.

For every image size a fresh subprocess (so peak memory is per size) runs what
``predict.py`` does for one image: read a 16-bit TIFF -> percentile normalize
-> predict_tiled -> probabilities_to_ids -> write the mask. It reports:

- the wall time of each step and of the whole,
- the model time inside that run (time spent in predict_fn calls),
- the raw model time: the same number of predict_fn calls on one fixed batch,
  alone, once before and once after the pipeline (the smaller is reported, so
  the overhead is not understated when other processes share the CPU),
- the overhead of tiling + blending + I/O relative to the raw model time, two
  ways: ``(total - raw) / raw`` and ``(total - model time in run) / raw``
  (the second is insensitive to other processes slowing the raw pass),
- the peak resident memory of the process (VmHWM), TensorFlow included, and
  the same peak just before the image is read (TensorFlow, the model, warm-up).

The model is the default U-Net (``build_unet(n_classes=2, base_filters=16,
depth=4, upsampling="nearest")``) with random weights; the input images are
synthetic (smooth blobs + noise, uint16) and written as uncompressed TIFFs to a
temporary folder first, so reading is included.

    python bench/bench_predict.py --sizes 1024 2048 4971x5521
    python bench/bench_predict.py --sizes 2048 --tta
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_size(text: str) -> tuple[int, int]:
    """``"2048"`` -> (2048, 2048); ``"4971x5521"`` -> (4971, 5521) as (H, W)."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected N or HxW") from None
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected N or HxW")
    return sizes[0], sizes[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(1024, 1024), (2048, 2048), (4971, 5521)],
                   metavar="N|HxW", help="image sizes (rows x columns)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--tta", action="store_true", help="8-fold rot90/flip test-time augmentation")
    p.add_argument("--window", default="gaussian", choices=("gaussian", "cosine"))
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: run one size on this TIFF
    return p.parse_args(argv)


# === Parent: make images, run one subprocess per size, print the table ===


def write_synthetic(path: Path, shape: tuple[int, int], seed: int = 0) -> None:
    """A uint16 image with smooth structure and noise, written without compression."""
    import cv2
    import numpy as np
    import tifffile

    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, shape[0] // 64), max(2, shape[1] // 64)), dtype=np.float32)
    smooth = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    smooth *= 30000
    smooth += rng.normal(10000, 2000, size=shape).astype(np.float32)
    image = np.clip(smooth, 0, 65535).astype(np.uint16)
    tifffile.imwrite(path, image)


def run_parent(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        for shape in args.sizes:
            path = Path(tmp) / f"image_{shape[0]}x{shape[1]}.tif"
            write_synthetic(path, shape)
            cmd = [sys.executable, __file__, "--child", str(path), "--tile", str(args.tile),
                   "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
                   "--base-filters", str(args.base_filters), "--depth", str(args.depth), "--window", args.window]
            if args.tta:
                cmd.append("--tta")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            if proc.returncode:
                sys.exit(f"benchmark of {shape[0]}x{shape[1]} failed (exit {proc.returncode})")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"done {row['size']}: {row['total_s']:.1f} s", file=sys.stderr, flush=True)
            path.unlink()
    print_table(rows, args)


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\n`python bench/bench_predict.py {' '.join(sys.argv[1:])}`\n")
    print(f"U-Net base {args.base_filters}, depth {args.depth}, nearest upsampling, random weights; "
          f"tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}, window {args.window}, "
          f"TTA {'8x' if args.tta else 'off'}; {os.cpu_count()} CPU cores.\n")
    head = ["image (HxW)", "tiles", "model calls", "read s", "normalize s", "predict_tiled s", "ids+write s",
            "total s", "model in run s", "raw model s", "(total-raw)/raw", "non-model/raw", "RSS before image MB",
            "peak RSS MB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["size"], r["tiles"], r["calls"], f"{r['read_s']:.2f}", f"{r['normalize_s']:.2f}",
                 f"{r['predict_s']:.1f}",
                 f"{r['ids_s'] + r['write_s']:.2f}", f"{r['total_s']:.1f}", f"{r['model_in_run_s']:.1f}",
                 f"{r['raw_model_s']:.1f}", f"{100 * (r['total_s'] - r['raw_model_s']) / r['raw_model_s']:.1f} %",
                 f"{100 * (r['total_s'] - r['model_in_run_s']) / r['raw_model_s']:.1f} %",
                 f"{r['baseline_rss_mb']:.0f}", f"{r['peak_rss_mb']:.0f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


# === Child: one image, one fresh process ===


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_shape(path: Path) -> tuple[int, int]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].shape[:2]


def _calls(args: argparse.Namespace, shape: tuple[int, int]):
    """One item per predict_fn call that predict_tiled will make for ``shape``."""
    from unet_tf.inference import plan_tiles, tiling_padding

    (top, bottom), (left, right) = tiling_padding(shape, args.tile, args.overlap, 2**args.depth)
    plan = plan_tiles((shape[0] + top + bottom, shape[1] + left + right), args.tile, args.overlap, 2**args.depth)
    return range(-(-len(plan) // args.batch_size) * (8 if args.tta else 1))


def raw_model_time(predict_fn, batch, n_calls: int) -> float:
    """Seconds for ``n_calls`` calls of ``predict_fn`` on one fixed batch, nothing else."""
    t = time.perf_counter()
    for _ in range(n_calls):
        predict_fn(batch)
    return time.perf_counter() - t


def run_child(args: argparse.Namespace) -> None:
    import numpy as np

    from unet_tf.inference import make_predict_fn, predict_tiled, probabilities_to_ids
    from unet_tf.io import read_image, write_mask
    from unet_tf.models import build_unet
    from unet_tf.preprocessing import percentile_normalize

    model = build_unet(n_classes=2, base_filters=args.base_filters, depth=args.depth, upsampling="nearest")
    predict_fn = make_predict_fn(model)
    batch = np.random.default_rng(0).random((args.batch_size, args.tile, args.tile, 1), dtype=np.float32)
    t = time.perf_counter()
    predict_fn(batch)  # trace and warm up (predict.py pays this once per run, on its first batch)
    predict_fn(batch)
    import rasterio  # noqa: F401  (one-time reader/writer imports, paid once per predict.py run)
    import tifffile  # noqa: F401
    warmup = time.perf_counter() - t
    baseline_rss = peak_rss_mb()

    model_time = [0.0, 0]

    def timed_fn(x):
        t0 = time.perf_counter()
        y = predict_fn(x)
        model_time[0] += time.perf_counter() - t0
        model_time[1] += 1
        return y

    tiles = [0]
    n_calls = len(list(_calls(args, read_shape(args.child))))
    raw_before = raw_model_time(predict_fn, batch, n_calls)
    t0 = time.perf_counter()
    image = read_image(args.child)
    t1 = time.perf_counter()
    normalized = percentile_normalize(image)
    t2 = time.perf_counter()
    prob = predict_tiled(timed_fn, normalized, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                         size_divisor=2**args.depth, tta=args.tta, window=args.window,
                         progress=lambda done, total: tiles.__setitem__(0, total))
    t3 = time.perf_counter()
    ids = probabilities_to_ids(prob)
    t4 = time.perf_counter()
    write_mask(args.child.with_name(args.child.stem + "_mask.tif"), ids)
    t5 = time.perf_counter()
    rss = peak_rss_mb()

    del image, normalized, prob, ids
    assert model_time[1] == n_calls, (model_time[1], n_calls)
    raw = min(raw_before, raw_model_time(predict_fn, batch, n_calls))
    print(json.dumps({
        "size": f"{args.child.stem.split('_')[-1]}", "tiles": tiles[0], "calls": model_time[1], "warmup_s": warmup,
        "read_s": t1 - t0, "normalize_s": t2 - t1, "predict_s": t3 - t2, "ids_s": t4 - t3, "write_s": t5 - t4,
        "total_s": t5 - t0, "model_in_run_s": model_time[0], "raw_model_s": raw, "peak_rss_mb": rss,
        "baseline_rss_mb": baseline_rss,
    }))


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        run_child(arguments)
    else:
        run_parent(arguments)
