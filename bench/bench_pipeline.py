"""Throughput of make_dataset: patches/s with every augmentation on, with none,
and the cost of one elastic warp (256 px patch). Prints Markdown lines.

    python bench/bench_pipeline.py [--threads N] [--batches 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _import_package() -> None:
    """Put the repository on the path and import unet_tf: before TensorFlow, which loads with the oneDNN
    kernels unet_tf chooses (BENCHMARKS.md, "Round 4")."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import unet_tf  # noqa: F401


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--threads", type=int, default=0, help="TF intra/inter-op and tf.data threads (default 0: TF decides)"
    )
    p.add_argument("--patch-size", type=int, default=256, help="patch side (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--batches", type=int, default=40, help="timed batches (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (default 5)")
    return p.parse_args(argv)


def synthetic(n=12, size=1024, n_classes=5, seed=0):
    """Smooth random float images in ~0..1 and 5-class masks thresholded from them."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        field = ndimage.zoom(rng.random((size // 64, size // 64)), 64, order=3)
        field = (field - field.min()) / (np.ptp(field) + 1e-6)
        images.append((field + 0.05 * rng.standard_normal(field.shape)).astype(np.float32))
        masks.append(np.minimum(field * n_classes, n_classes - 1).astype(np.uint8))
    return images, masks


def patches_per_second(ds, batches: int, warmup: int) -> float:
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def elastic_warp_ms(patch: int, repeats: int = 100) -> float:
    """One elastic field + bilinear image warp + nearest mask warp, sequentially."""
    import numpy as np
    import tensorflow as tf

    from unet_tf.data import augment as A

    image = tf.constant(np.random.default_rng(0).random(1024 * 1024, np.float32))
    mask = tf.constant(np.zeros(1024 * 1024, np.uint8))
    size = tf.constant(1024, tf.int64)

    @tf.function
    def one(seed):
        field = A.elastic_field(seed, patch, 3, 10.0, 3.0)
        coords = A.sampling_coordinates(patch, tf.constant([400.5, 400.5]), None, field)
        coords = A.reflect_coordinates(coords, size, size)
        return (A.warp_bilinear(image, 0, size, size, coords), A.warp_nearest(mask, 0, size, coords))

    for i in range(5):
        one(tf.constant([i, 0]))
    start = time.perf_counter()
    for i in range(repeats):
        one(tf.constant([i, 1]))
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _import_package()
    import tensorflow as tf

    from unet_tf.config import AugmentConfig
    from unet_tf.data.pipeline import make_dataset

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    images, masks = synthetic()
    per_epoch = (args.batches + args.warmup) * args.batch_size // len(images) + 1
    every = AugmentConfig(elastic_prob=1.0, affine_prob=1.0, intensity_prob=1.0)
    command = "python bench/bench_pipeline.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    print(
        f"command: `{command}`, {os.cpu_count()} cores, 12 x 1024^2 images, 5 classes, "
        f"patch {args.patch_size}, batch {args.batch_size}"
    )
    variants = (
        ("every augmentation on (p=1)", every),
        ("default AugmentConfig", AugmentConfig()),
        ("augmentation off", None),
    )
    for name, cfg in variants:
        ds = make_dataset(
            images,
            masks,
            5,
            training=True,
            patch_size=args.patch_size,
            batch_size=args.batch_size,
            patches_per_image=per_epoch,
            augment=cfg,
            oversample_rare=0.3,
            seed=0,
        )
        if args.threads:
            options = tf.data.Options()
            options.threading.private_threadpool_size = args.threads
            ds = ds.with_options(options)
        rate = patches_per_second(ds, args.batches, args.warmup)
        print(f"| make_dataset, {name} | {rate:.0f} patches/s |")
    print(
        f"| elastic field + bilinear/nearest warp, one {args.patch_size} px patch, 1 thread "
        f"of work | {elastic_warp_ms(args.patch_size):.1f} ms |"
    )


if __name__ == "__main__":
    main()
