"""The generalist nuclei model (issue 24): held-aside DSB2018 images, GOWT1 with no GOWT1 training, the
fine-tuning curve, and the object-scale estimate on resized images. One command each:

    export UNET_TF_DATA=../shared/data
    python bench/bench_nuclei.py heldout  --weights nuclei [--scales estimate none truth]  # 66 held-aside ids
    python bench/bench_nuclei.py resized  --weights nuclei --factors 0.5 2 # the same, resized, +- estimate
    python bench/bench_nuclei.py gowt1    --weights nuclei                 # GOWT1 02 full frames, zero-shot
    python bench/bench_nuclei.py finetune --weights nuclei --frames 1 2 4 --seeds 0 1 2 --steps 300

``heldout``: the last 66 of the 664 DSB2018 stage-1 train ids in sorted order (the ``--holdout 66`` of the
recipe, bench/recipes/nuclei.yaml), scored one-to-one at IoU 0.5 (AP@0.5 = TP / (TP + FP + FN), pooled) and
mean AP over IoU 0.5:0.05:0.95, per modality: ``fluorescence`` (median gray <= 100: dark background) and
``brightfield`` (bright background: stained tissue in colour and gray brightfield).
``resized``: each held-aside image and its labels resized by a factor (image: area / bilinear; labels:
nearest), predicted with the estimate (default) and without it (``diameter`` = the model's own: factor 1).
``gowt1``: Fluo-N2DH-GOWT1 02, fully annotated frames 052 055 072, as bench_gowt1.py scores them.
``finetune`` (``--arms`` both, finetune or scratch; rows accumulate in finetune-rows.jsonl): GOWT1 01 fully
annotated frames (1: 021; 2: 021 039; 4: 021 031 033 039) from ``--weights``
vs from scratch at the same object scale, the same steps and seeds; scored on 02 as ``gowt1``. ``--scratch-all``
adds one run from scratch on all 30 SEG frames of 01 with ten times the steps. ``rescore`` scores those runs
again with the current prediction code.
Results go to ``--out`` (results-<command>.json) and print as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gowt1 import FULL_FRAMES, link_sequence  # noqa: E402

import unet_tf  # noqa: E402
from unet_tf.evaluation.matching import InstanceEvaluator  # noqa: E402
from unet_tf.io.images import read_image  # noqa: E402
from unet_tf.objects.scale import instance_areas, median_diameter, resize, scaled_shape  # noqa: E402

DATA = Path(os.environ.get("UNET_TF_DATA", "../shared/data"))
HOLDOUT = 66
FINETUNE_FRAMES = {1: ("021",), 2: ("021", "039"), 4: ("021", "031", "033", "039")}
COLUMNS = ("ap50", "mean_ap", "seg", "n_true", "n_pred")


SCALES = {"estimate": ("estimate", True), "none": ("no rescale", False), "truth": ("true diameter", "truth")}


def heldout_ids(data_dir: Path, n: int = HOLDOUT) -> list[str]:
    """The held-aside ids: the last ``n`` in sorted order (what ``data.holdout`` n keeps aside)."""
    return sorted(p.stem for p in (data_dir / "masks").glob("*.tif"))[-n:]


def modality(png: Path) -> str:
    """``brightfield`` when the image's median gray is above 100 (bright background), else ``fluorescence``."""
    rgb = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)[..., :3].astype(np.float64)
    return "brightfield" if np.median(rgb.mean(-1)) > 100 else "fluorescence"


def scores(evaluator: InstanceEvaluator) -> dict:
    pooled = evaluator.rows()[-1]
    return {k: (round(float(pooled[k]), 4) if isinstance(pooled[k], float) else pooled[k]) for k in COLUMNS}


def score_dsb(model, data_dir: Path, factor: float = 1.0, estimate: bool | str = True) -> dict:
    """Pooled scores per modality and over all held-aside images, the image resized by ``factor``; the scale
    from the estimate (True), none (False: the model's own diameter given), or ``"truth"``: the true median
    diameter of the image's nuclei given (what a perfect estimate would do)."""
    info = unet_tf.read_info(model)
    groups: dict[str, InstanceEvaluator] = {"all": InstanceEvaluator()}
    factors, t0 = [], time.perf_counter()
    for name in heldout_ids(data_dir):
        png = data_dir / "images" / f"{name}.png"
        image, truth = read_image(png), tifffile.imread(data_dir / "masks" / f"{name}.tif")
        if factor != 1.0:
            shape = scaled_shape(image.shape, factor)
            image, truth = resize(image, shape, "image"), resize(truth, shape, "nearest")
        diameter = {True: None, False: info.object_diameter}.get(estimate)
        if estimate == "truth":
            diameter = median_diameter(instance_areas(truth))
        result = unet_tf.predict_image(model, image, diameter=diameter, name=name)
        factors.append(result.scale_factor)
        for group in ("all", modality(png)):
            groups.setdefault(group, InstanceEvaluator()).add(name, truth, result.instances)
    out = {group: scores(ev) for group, ev in groups.items()}
    out["images"] = {group: len(ev.names) for group, ev in groups.items()}
    out["scale_factors"] = [
        round(float(np.min(factors)), 3),
        round(float(np.median(factors)), 3),
        round(float(np.max(factors)), 3),
    ]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def score_gowt1(model, data: Path = DATA / "Fluo-N2DH-GOWT1") -> dict:
    """Pooled scores on the fully annotated frames of GOWT1 02 (the model's own scale handling)."""
    ev, factors = InstanceEvaluator(), []
    for t in FULL_FRAMES["02"]:
        image = tifffile.imread(data / "02" / f"t{t}.tif")
        truth = tifffile.imread(data / "02_GT" / "SEG" / f"man_seg{t}.tif")
        result = unet_tf.predict_image(model, image, name=f"t{t}")
        factors.append(result.scale_factor)
        ev.add(t, truth, result.instances)
    return {**scores(ev), "scale_factors": [round(float(f), 3) for f in factors]}


def finetune_run(weights: str | None, frames: tuple[str, ...] | None, seed: int, steps: int, out: Path, diameter):
    """One GOWT1 01 run (from ``weights`` or from scratch at ``diameter``), scored on 02."""
    folder = link_sequence(
        DATA / "Fluo-N2DH-GOWT1", out / ("links-all" if frames is None else f"links-{len(frames)}"), frames
    )
    run = out / f"{'finetune' if weights else 'scratch'}-{'all' if frames is None else len(frames)}-seed{seed}"
    epochs = max(1, steps // 20)
    cfg = unet_tf.load_config(
        None,
        dataset="ctc",
        data_dir=str(folder),
        patch_size=128,
        epochs=epochs,
        steps_per_epoch=20,
        seed=seed,
        out=str(run),
        init_from=weights,
        object_diameter=None if weights else diameter,
        val_fraction=0.25,
        early_stopping_patience=epochs,
    )
    t0 = time.perf_counter()
    summary = unet_tf.train(cfg, log=lambda line: None, verbose=0)
    minutes = (time.perf_counter() - t0) / 60
    return {**score_gowt1(unet_tf.load_model(str(summary.best_path))), "train_minutes": round(minutes, 2)}


def finetune(args) -> dict:
    """Every (start, frames, seed) run of ``--arms``; each row is appended to ``finetune-rows.jsonl`` as it ends,
    so the arms can run at different times and the table reads them all."""
    diameter = unet_tf.read_info(unet_tf.load_model(args.weights)).object_diameter
    rows_file = args.out / "finetune-rows.jsonl"
    starts = {"finetune": [args.weights], "scratch": [None], "both": [args.weights, None]}[args.arms]
    for n in args.frames:
        for seed in args.seeds:
            for weights in starts:
                row = finetune_run(weights, FINETUNE_FRAMES[n], seed, args.steps, args.out, diameter)
                row = {"start": weights or "scratch", "frames": n, "seed": seed, "steps": args.steps, **row}
                _append(rows_file, row)
    if args.scratch_all:
        row = finetune_run(None, None, args.seeds[0], 10 * args.steps, args.out, diameter)
        _append(rows_file, {"start": "scratch", "frames": 30, "seed": args.seeds[0], "steps": 10 * args.steps, **row})
    return {"rows": [json.loads(line) for line in rows_file.read_text().splitlines()]}


def rescore(args) -> dict:
    """Score every run of finetune-rows.jsonl again with the current prediction code (rows keep their training
    facts); the file is rewritten."""
    rows_file = args.out / "finetune-rows.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    for row in rows:
        arm = "scratch" if row["start"] == "scratch" else "finetune"
        run = args.out / f"{arm}-{'all' if row['frames'] == 30 else row['frames']}-seed{row['seed']}"
        row.update(score_gowt1(unet_tf.load_model(str(run / "best.keras"))))
        print(json.dumps(row), flush=True)
    rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"rows": rows}


def _append(path: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def markdown(command: str, results: dict) -> str:
    if command in ("finetune", "rescore"):
        lines = [
            "| start | frames | seed | steps | AP@0.5 | mean AP | SEG | train min |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["rows"]:
            lines.append(
                f"| {r['start']} | {r['frames']} | {r['seed']} | {r['steps']} | {r['ap50']:.3f} | {r['mean_ap']:.3f} "
                f"| {r['seg']:.3f} | {r['train_minutes']:.1f} |"
            )
        return "\n".join(lines)
    lines = [
        "| case | group | images | AP@0.5 | mean AP | SEG | objects found / true |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, value in results.items():
        if not isinstance(value, dict) or "all" not in value and "ap50" not in value:
            continue
        groups = {k: v for k, v in value.items() if isinstance(v, dict) and "ap50" in v} or {"all": value}
        for group, s in groups.items():
            n = value.get("images", {}).get(group, "")
            lines.append(
                f"| {case} | {group} | {n} | {s['ap50']:.3f} | {s['mean_ap']:.3f} | {s['seg']:.3f} | "
                f"{s['n_pred']} / {s['n_true']} |"
            )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("heldout", "resized", "gowt1", "finetune", "rescore"))
    p.add_argument("--weights", default="nuclei", help="a model file or bundled name (default nuclei)")
    p.add_argument("--data-dir", type=Path, default=DATA / "dsb2018_stage1_train")
    p.add_argument("--factors", type=float, nargs="+", default=[0.5, 2.0])
    p.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4], choices=sorted(FINETUNE_FRAMES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--scratch-all", action="store_true")
    p.add_argument("--arms", choices=("both", "finetune", "scratch"), default="both")
    p.add_argument(
        "--scales",
        nargs="+",
        choices=SCALES,
        default=list(SCALES),
        help="heldout / resized: how each image's scale is set (resized: estimate and none only)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench-nuclei"))
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.command in ("finetune", "rescore"):
        results = finetune(args) if args.command == "finetune" else rescore(args)
    else:
        model = unet_tf.load_model(args.weights)
        if args.command == "heldout":
            results = {SCALES[a][0]: score_dsb(model, args.data_dir, estimate=SCALES[a][1]) for a in args.scales}
        elif args.command == "resized":
            results = {
                f"x{f:g} {SCALES[a][0]}": score_dsb(model, args.data_dir, f, SCALES[a][1])
                for f in args.factors
                for a in args.scales
                if a != "truth"
            }
        else:
            results = {"gowt1 02": score_gowt1(model)}
        results["foreground_threshold"] = unet_tf.read_info(model).foreground_threshold
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "seconds": round(time.perf_counter() - t0)}
    (args.out / f"results-{args.command}.json").write_text(json.dumps(results, indent=2))
    print(markdown(args.command, results))


if __name__ == "__main__":
    main()
