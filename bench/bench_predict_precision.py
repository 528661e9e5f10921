"""Prediction in mixed bfloat16 vs float32: seconds per megapixel and mask agreement, A/B in one process.

For each model and its images, the model is loaded once in float32 and once in
mixed bfloat16 (:func:`unet_tf.training.precision.prediction_model`: bfloat16
compute, float32 weights and probabilities). Each repeat runs ``predict_image``
(the one prediction path: normalization, tiled blended prediction at tile 512 /
overlap 64 / batch 4, class ids, objects of an instance model, the object-scale
estimate where the model asks for it) over all images in both precisions, the
order alternating (A/B, B/A, ...) so that the load of a shared machine falls on
both alike. Each precision is traced and run once on the first image before
timing. Reported per model:

- ``s/MP``: median over repeats of (seconds for all images / their megapixels);
- ``speed-up``: median over repeats of the per-repeat ratio float32 / bfloat16
  (measured side by side), and ``net``: the same for the network alone (one
  batch of 4 tiles of 512 px, A/B alternating, median of ``--net-calls``);
- ``agree``: fraction of pixels with the same class id in both precisions
  (first repeat, all images pooled);
- instance models: objects in each precision and AP@0.5 of the bfloat16
  objects against the float32 ones.

Models: the default demo (``--demo``: a ``best.keras`` of ``train.py --dataset
tem``), the bundled ``nuclei`` on GOWT1 frames (``--gowt1``), an ISBI 2012 model
(``--isbi``); each is skipped when its file or images are missing.

    UNET_TF_DATA=../shared/data python bench/bench_predict_precision.py \
        --demo runs/tem/best.keras --isbi runs/isbi/best.keras --repeats 3 --json precision.json
    python bench/bench_predict_precision.py --models isbi --isbi runs/isbi/best.keras --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
PRECISIONS = ("float32", "mixed_bfloat16")
MODELS = ("demo", "gowt1", "isbi")


def parse_args(argv=None) -> argparse.Namespace:
    data = Path(os.environ.get("UNET_TF_DATA", REPO / "data"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", type=Path, help="best.keras of the default TEM demo (its test images are used)")
    p.add_argument("--demo-images", nargs="*", type=Path, help="default: raw_*.tif of the model's data_dir/test")
    p.add_argument("--gowt1", type=Path, default=data / "Fluo-N2DH-GOWT1", help="the GOWT1 folder")
    p.add_argument("--gowt1-frames", nargs="+", default=["01/t000.tif", "01/t045.tif", "02/t000.tif"])
    p.add_argument("--isbi", type=Path, help="best.keras of an ISBI 2012 model")
    p.add_argument("--isbi-images", nargs="*", type=Path, help="default: 5 slices of <data>/isbi2012/test/image")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="the models to measure")
    p.add_argument("--repeats", type=int, default=3, help="A/B rounds over all images per model")
    p.add_argument("--net-calls", type=int, default=6, help="A/B calls of the network alone per model")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    args.data = data
    return args


def machine() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"^Model name:\s*(.+)$", text, re.M)
    flags = set((re.search(r"^Flags:\s*(.+)$", text, re.M) or ["", ""])[1].split())
    return {
        "cpu": model.group(1).strip() if model else "unknown",
        "cores": os.cpu_count(),
        "flags": [f for f in SHOWN_FLAGS if f in flags],
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def cases(args: argparse.Namespace) -> list[tuple[str, str, list[Path]]]:
    """(name, weights, images) of each model whose file and images exist."""
    from unet_tf.models.file import load_model_and_info

    found = []
    if "demo" in args.models and args.demo and args.demo.exists():
        images = args.demo_images
        if not images:
            data_dir = load_model_and_info(args.demo)[1].data_dir
            images = sorted(Path(data_dir or "").glob("test/raw_*.tif"))
        found.append(("demo (TEM)", str(args.demo), images))
    gowt1 = [args.gowt1 / f for f in args.gowt1_frames if (args.gowt1 / f).exists() and "gowt1" in args.models]
    found.append(("GOWT1 (bundled nuclei)", "nuclei", gowt1))
    if "isbi" in args.models and args.isbi and args.isbi.exists():
        images = args.isbi_images or sorted((args.data / "isbi2012" / "test" / "image").glob("*.png"))[:5]
        found.append(("ISBI 2012", str(args.isbi), images))
    return [(name, weights, images) for name, weights, images in found if images]


def time_images(model, images: list[np.ndarray]) -> tuple[float, list]:
    import unet_tf

    start, results = time.perf_counter(), []
    for image in images:
        results.append(unet_tf.predict_image(model, image))
    return time.perf_counter() - start, results


def net_speedup(models: dict, calls: int) -> float:
    """Median float32 / bfloat16 time ratio of one batch of 4 tiles of 512 px through the network, A/B."""
    from unet_tf.prediction.image import engine

    batch = np.random.default_rng(0).random((4, 512, 512, 1)).astype(np.float32)
    fns = {p: engine(m)[0] for p, m in models.items()}
    ratios = []
    for i in range(calls):
        seconds = {}
        for p in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
            start = time.perf_counter()
            fns[p](batch)
            seconds[p] = time.perf_counter() - start
        ratios.append(seconds["float32"] / seconds["mixed_bfloat16"])
    return statistics.median(ratios)


def agreement(first: dict) -> dict:
    """Pixel agreement of class ids; objects and AP@0.5 (bfloat16 vs float32) when there are objects."""
    from unet_tf.evaluation.matching import InstanceEvaluator

    a, b = first["float32"], first["mixed_bfloat16"]
    same = sum(int(np.sum(x.ids == y.ids)) for x, y in zip(a, b))
    out = {
        "agree": same / sum(x.ids.size for x in a),
        "factors": sorted({(x.scale_factor, y.scale_factor) for x, y in zip(a, b)}),
    }
    if a[0].instances is not None:
        evaluator = InstanceEvaluator()
        for i, (x, y) in enumerate(zip(a, b)):
            evaluator.add(str(i), x.instances, y.instances)
        pooled = evaluator.rows()[-1]
        out.update(objects_f32=pooled["n_true"], objects_bf16=pooled["n_pred"], ap50=pooled["ap50"])
    return out


def bench_case(weights: str, paths: list[Path], repeats: int, net_calls: int) -> dict:
    from unet_tf.io.images import read_image
    from unet_tf.models.file import load_model_and_info
    from unet_tf.training.precision import prediction_model

    images = [read_image(p) for p in paths]
    model = load_model_and_info(weights)[0]
    models = {p: prediction_model(model, p) for p in PRECISIONS}
    for m in models.values():  # trace and warm up
        time_images(m, images[:1])
    mpix = sum(im.size for im in images) / 1e6
    seconds, ratios, first = {p: [] for p in PRECISIONS}, [], {}
    for r in range(repeats):
        for p in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
            spent, results = time_images(models[p], images)
            seconds[p].append(spent / mpix)
            first.setdefault(p, results)
        ratios.append(seconds["float32"][-1] / seconds["mixed_bfloat16"][-1])
    return {
        "images": len(images),
        "mpix": round(mpix, 3),
        **{f"s_per_mpix_{p}": statistics.median(seconds[p]) for p in PRECISIONS},
        "speedup": statistics.median(ratios),
        "speedup_net": net_speedup(models, net_calls),
        **agreement(first),
    }


def markdown(results: dict, info: dict) -> str:
    lines = [
        f"CPU: {info['cpu']} ({info['cores']} cores; {', '.join(info['flags'])}); load average before "
        f"{info['load_average']}, after {info['load_average_after']}",
        "",
        "| model and images | images (MP) | float32 s/MP | bf16 s/MP | speed-up | net speed-up | class ids agree | "
        "objects f32 / bf16 | AP@0.5 bf16 vs f32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        objects = f"{r['objects_f32']} / {r['objects_bf16']}" if "ap50" in r else "-"
        ap = f"{r['ap50']:.4f}" if "ap50" in r else "-"
        lines.append(
            f"| {name} | {r['images']} ({r['mpix']:.2f}) | {r['s_per_mpix_float32']:.2f} | "
            f"{r['s_per_mpix_mixed_bfloat16']:.2f} | {r['speedup']:.2f}x | {r['speedup_net']:.2f}x | "
            f"{100 * r['agree']:.3f} % | {objects} | {ap} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from unet_tf.runtime import import_tensorflow

    import_tensorflow()
    info, results = machine(), {}
    for name, weights, images in cases(args):
        print(f"{name}: {len(images)} image(s), {weights}", flush=True)
        results[name] = bench_case(weights, images, args.repeats, args.net_calls)
        print(json.dumps(results[name]), flush=True)
    info["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(markdown(results, info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
