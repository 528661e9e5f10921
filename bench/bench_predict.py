"""Benchmark full-resolution prediction of one image file: streamed vs whole, time and peak memory.

For every image size and mode a fresh subprocess (so peak memory is per run)
predicts one synthetic 8-bit (or 16-bit) TIFF and writes its mask and object
table, as ``predict.py`` does:

- ``stream``: ``unet_tf.prediction.streaming.predict_file_streaming`` (row windows, exact
  histogram percentiles, band-wise tiled mask, objects per band);
- ``whole``: ``read_image`` -> ``predict_image`` -> ``write_mask`` ->
  ``measure_objects`` on the whole mask (only up to ``--whole-max-mpix``: the
  whole path needs ~20 bytes per pixel and more).

It reports the wall time, the model time inside that run (time spent in
predict_fn calls), the non-model share ``(total - model) / total`` (reading,
statistics, tiling, blending, ids, writing, objects), seconds per megapixel,
the peak resident memory of the process (``resource.getrusage``'s
``ru_maxrss``, TensorFlow included) and the same just before the image is
touched (TensorFlow, the model, warm-up).

The model is the default U-Net (``build_unet(n_classes=2, base_filters=16,
depth=4)``) with random weights. The inputs are smooth blobs + noise written
band by band with ``tiff_stream.write_tiled`` (tiled, zlib), so not even the
benchmark holds a 30k x 30k image.

    python bench/bench_predict.py --sizes 1024 4971x5521 8192 16384 30000
    python bench/bench_predict.py --sizes 2048 --modes stream
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
MODES = ("stream", "whole")


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
    p.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(1024, 1024), (4971, 5521), (8192, 8192)],
        metavar="N|HxW",
        help="image sizes (rows x columns)",
    )
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument(
        "--whole-max-mpix", type=float, default=70.0, help="run the whole-image path only up to this many megapixels"
    )
    p.add_argument("--dtype", choices=("uint8", "uint16"), default="uint8")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument(
        "--stand-in-model",
        action="store_true",
        help="replace the network by a cheap NumPy function (sigmoid of the input): measures "
        "the pipeline alone (reading, tiling, blending, writing, objects) and its memory",
    )
    p.add_argument("--no-objects", action="store_true", help="skip the object table (prediction + mask only)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one run on this TIFF
    p.add_argument("--mode", choices=MODES, default="stream", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# === Parent: make images, run one subprocess per size and mode, print the table ===


def synthetic_bands(shape: tuple[int, int], dtype: str, seed: int = 0, rows: int = 1024):
    """(h, W) bands of smooth blobs (~64 px) + noise, top to bottom; never the whole image."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    height, width = shape
    top = 255 if dtype == "uint8" else 65535
    coarse_w = max(2, width // 64)
    for row0 in range(0, height, rows):
        h = min(rows, height - row0)
        coarse = rng.random((max(2, h // 64), coarse_w), dtype=np.float32)
        band = cv2.resize(coarse, (width, h), interpolation=cv2.INTER_CUBIC) * (0.6 * top)
        band += rng.normal(0.2 * top, 0.04 * top, size=(h, width)).astype(np.float32)
        yield np.clip(band, 0, top).astype(dtype)


def write_synthetic(path: Path, shape: tuple[int, int], dtype: str) -> None:
    from unet_tf.io.writers import write_tiled

    write_tiled(path, synthetic_bands(shape, dtype), shape, dtype, tile=256)


def child_command(args: argparse.Namespace, path: Path, mode: str) -> list[str]:
    return (
        [
            sys.executable,
            __file__,
            "--child",
            str(path),
            "--mode",
            mode,
            "--tile",
            str(args.tile),
            "--overlap",
            str(args.overlap),
            "--batch-size",
            str(args.batch_size),
            "--base-filters",
            str(args.base_filters),
            "--depth",
            str(args.depth),
        ]
        + (["--stand-in-model"] if args.stand_in_model else [])
        + (["--no-objects"] if args.no_objects else [])
    )


def run_parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        for shape in args.sizes:
            path = Path(tmp) / f"image_{shape[0]}x{shape[1]}.tif"
            write_synthetic(path, shape, args.dtype)
            for mode in args.modes:
                if mode == "whole" and shape[0] * shape[1] / 1e6 > args.whole_max_mpix:
                    continue
                proc = subprocess.run(child_command(args, path, mode), env=env, stdout=subprocess.PIPE, text=True)
                if proc.returncode:
                    sys.exit(f"benchmark of {shape[0]}x{shape[1]} ({mode}) failed (exit {proc.returncode})")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            path.unlink()
    print_table(rows, args)


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\n`python bench/bench_predict.py {' '.join(sys.argv[1:])}`\n")
    model = (
        "a NumPy stand-in for the network (sigmoid of the input)"
        if args.stand_in_model
        else f"U-Net base {args.base_filters}, depth {args.depth}, random weights"
    )
    print(
        f"{model}, 2 classes; {args.dtype} input "
        f"(tiled zlib TIFF); tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}; "
        f"mask{'' if args.no_objects else ' + object table'} written; {os.cpu_count()} CPU cores.\n"
    )
    head = [
        "image (HxW)",
        "mode",
        "tiles",
        "objects",
        "total s",
        "model s",
        "non-model share",
        "s / MPix",
        "RSS before image MB",
        "peak RSS MB",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [
            r["size"],
            r["mode"],
            r["tiles"],
            r["objects"],
            f"{r['total_s']:.1f}",
            f"{r['model_s']:.1f}",
            f"{100 * (r['total_s'] - r['model_s']) / r['total_s']:.1f} %",
            f"{r['total_s'] / r['mpix']:.2f}",
            f"{r['baseline_rss_mb']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")


# === Child: one image, one mode, one fresh process ===


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args: argparse.Namespace):
    """The untrained default U-Net with a ModelInfo, so both paths take it as a loaded model."""
    import keras

    from unet_tf.models import build_unet
    from unet_tf.models.file import ModelInfo, attach_info

    keras.utils.set_random_seed(0)  # the same weights in every subprocess, so both modes give one mask
    info = ModelInfo((0, 255), ("background", "foreground"), patch_size=args.tile, size_divisor=2**args.depth)
    net = build_unet(n_classes=2, base_filters=args.base_filters, depth=args.depth, upsampling="nearest")
    return attach_info(net, info)


def run_whole(model, predict_fn, path: Path, config, progress, objects: bool = True) -> int | str:
    """predict.py's whole-image path for one file: read, predict, write the mask, objects."""
    from unet_tf.io.images import read_image
    from unet_tf.io.writers import write_mask
    from unet_tf.objects.morphometry import measure_objects
    from unet_tf.prediction import image as prediction

    image = read_image(path)
    prediction._PREDICT_FNS[model] = predict_fn  # the timed function
    result = prediction.predict_image(model, image, config, progress=progress)
    write_mask(path.with_name(path.stem + "_mask.tif"), result.mask)
    return len(measure_objects(result.ids, ("background", "foreground"))) if objects else "-"


def run_child(args: argparse.Namespace) -> None:
    import numpy as np

    from unet_tf.config import PredictConfig
    from unet_tf.prediction.image import engine
    from unet_tf.prediction.streaming import predict_file_streaming

    model = build(args)
    predict_fn, info = engine(model)
    if args.stand_in_model:

        def predict_fn(x):
            return 1 / (1 + np.exp(4 - 8 * x))  # foreground where the normalized input is > 0.5

    batch = np.random.default_rng(0).random((args.batch_size, args.tile, args.tile, 1), dtype=np.float32)
    predict_fn(batch)  # trace and warm up (predict.py pays this once per run)
    import rasterio  # noqa: F401  (one-time reader/writer imports, paid once per predict.py run)
    import tifffile  # noqa: F401

    baseline_rss = peak_rss_mb()
    model_time, tiles = [0.0], [0]

    def timed_fn(x):
        t = time.perf_counter()
        y = predict_fn(x)
        model_time[0] += time.perf_counter() - t
        return y

    config = PredictConfig(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, overlay=False)
    progress = lambda done, total: tiles.__setitem__(0, total)  # noqa: E731
    t0 = time.perf_counter()
    if args.mode == "stream":
        result = predict_file_streaming(
            timed_fn,
            info,
            args.child,
            args.child.parent,
            args.child.stem + "_s",
            config,
            progress=progress,
            measure=not args.no_objects,
        )
        n_objects = len(result["objects"]) if not args.no_objects else "-"
    else:
        n_objects = run_whole(model, timed_fn, args.child, config, progress, not args.no_objects)
    total = time.perf_counter() - t0
    height, width = (int(n) for n in args.child.stem.split("_")[-1].split("x"))
    print(
        json.dumps(
            {
                "size": f"{height}x{width}",
                "mode": args.mode,
                "tiles": tiles[0],
                "objects": n_objects,
                "total_s": total,
                "model_s": model_time[0],
                "mpix": height * width / 1e6,
                "peak_rss_mb": peak_rss_mb(),
                "baseline_rss_mb": baseline_rss,
            }
        )
    )


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        run_child(arguments)
    else:
        run_parent(arguments)
