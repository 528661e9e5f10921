"""TensorFlow vs onnxruntime for tiled prediction of one large image, side by side.

The same untrained default U-Net (base 16, depth 4, 5 classes, random weights
from seed 0) is saved as a bare ``.keras`` network and exported to ONNX
(``unet_tf.export.write_onnx``). Each engine then runs in its own subprocess
(so peak RSS is its own): build the synthetic image (smooth blobs + noise,
float32, already normalized), load the engine, and run
``unet_tf.prediction.tiled.predict_tiled`` with the same tiles, overlap and batch
size: ``make_predict_fn(keras_model)`` for TensorFlow, ``load_onnx(path)`` for
onnxruntime. Reported per engine: load time, the first batch alone (tracing /
session warm-up), the whole tiled prediction, peak RSS (``VmHWM``), and
the max abs difference of the two probability maps (on a 1/8 subsample).

The onnxruntime child imports ``unet_tf.prediction.onnx`` and ``unet_tf.prediction.tiled``
without running ``unet_tf/__init__.py`` (which loads Keras until the lazy
public API lands), so its RSS is what a machine without TensorFlow would see;
it prints whether TensorFlow got imported anyway.

    python bench/bench_onnx.py                      # 4971 x 5521
    python bench/bench_onnx.py --size 2048x2048 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_CLASSES = 5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--size", default="4971x5521", help="image size HxW (rows x columns)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    p.add_argument("--engine", choices=("tf", "onnx"), help=argparse.SUPPRESS)  # child mode
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def synthetic_image(height: int, width: int, seed: int = 0):
    """Smooth blobs + noise, float32 (H, W), roughly in [0, 1] like a normalized image."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, height // 64), max(2, width // 64))).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 0.05, (height, width)).astype(np.float32)
    return image


def prepare(folder: Path) -> None:
    """Write ``bare.keras`` and ``model.onnx`` of the untrained default U-Net into ``folder``."""
    _import_package()
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.export.onnx import write_onnx
    from unet_tf.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(base_filters=16, depth=4), N_CLASSES)
    model.save(folder / "bare.keras")
    info = {
        "class_values": list(range(N_CLASSES)),
        "class_names": [f"c{i}" for i in range(N_CLASSES)],
        "size_divisor": 16,
        "patch_size": 256,
        "normalize": {"pmin": 2.0, "pmax": 98.0, "clip": False},
    }
    write_onnx(model, info, folder / "model.onnx")


def _import_package() -> None:
    """Put the repository on the path and import unet_tf: before TensorFlow, which loads with the oneDNN
    kernels unet_tf chooses (BENCHMARKS.md, "Round 4")."""
    sys.path.insert(0, str(REPO))
    import unet_tf  # noqa: F401


def _import_without_package_init() -> None:
    """Make ``unet_tf`` a bare namespace so its submodules import without ``__init__`` (no Keras)."""
    import types

    package = types.ModuleType("unet_tf")
    package.__path__ = [str(REPO / "unet_tf")]
    sys.modules["unet_tf"] = package


def peak_rss_mb() -> float:
    """VmHWM of this process in MB (ru_maxrss would include the parent's peak at fork time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """Run one engine; print one JSON line."""
    import numpy as np

    start = time.perf_counter()
    if args.engine == "onnx":
        _import_without_package_init()
        from unet_tf.prediction.onnx import load_onnx

        predict_fn = load_onnx(Path(args.model_dir) / "model.onnx", threads=args.threads)
    else:
        _import_package()
        import keras

        from unet_tf.prediction.tiled import make_predict_fn

        predict_fn = make_predict_fn(keras.models.load_model(Path(args.model_dir) / "bare.keras"))
    from unet_tf.prediction.tiled import predict_tiled

    load_s = time.perf_counter() - start
    height, width = (int(v) for v in args.size.lower().split("x"))
    image = synthetic_image(height, width)
    start = time.perf_counter()
    predict_fn(np.zeros((args.batch_size, args.tile, args.tile, 1), np.float32))
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    prob = predict_tiled(
        predict_fn, image, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, size_divisor=16
    )
    predict_s = time.perf_counter() - start
    np.save(Path(args.model_dir) / f"prob_{args.engine}.npy", prob[::8, ::8])
    print(
        json.dumps(
            {
                "engine": args.engine,
                "load_s": load_s,
                "first_batch_s": first_s,
                "predict_s": predict_s,
                "peak_rss_mb": peak_rss_mb(),
                "tensorflow_imported": "tensorflow" in sys.modules,
            }
        )
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                return line.split(":", 1)[1].strip() + (" (avx512)" if "avx512f" in flags else " (no avx512)")
    except OSError:
        pass
    return platform.processor()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.engine:
        child(args)
        return 0
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as folder:
        prepare(Path(folder))
        results = []
        for engine in ("tf", "onnx"):
            cmd = [
                sys.executable,
                __file__,
                "--engine",
                engine,
                "--model-dir",
                folder,
                "--size",
                args.size,
                "--tile",
                str(args.tile),
                "--overlap",
                str(args.overlap),
                "--batch-size",
                str(args.batch_size),
            ]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if run.returncode:
                print(run.stderr[-3000:], file=sys.stderr)
                return run.returncode
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        diff = float(np.max(np.abs(np.load(Path(folder) / "prob_tf.npy") - np.load(Path(folder) / "prob_onnx.npy"))))
    print(
        f"image {args.size}, tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}; "
        f"U-Net base 16 depth 4, {N_CLASSES} classes; CPU {cpu_name()}, {os.cpu_count()} cores"
    )
    print(f"{'engine':<12}{'load s':>8}{'1st batch s':>13}{'predict s':>11}{'peak RSS MB':>13}  TF imported")
    for r in results:
        print(
            f"{r['engine']:<12}{r['load_s']:>8.1f}{r['first_batch_s']:>13.2f}{r['predict_s']:>11.1f}"
            f"{r['peak_rss_mb']:>13.0f}  {r['tensorflow_imported']}"
        )
    tf_s, ort_s = results[0]["predict_s"], results[1]["predict_s"]
    print(f"onnxruntime / TensorFlow predict time: {ort_s / tf_s:.2f}; max abs difference {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
