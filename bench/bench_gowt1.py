"""GOWT1 instance segmentation and tracking benchmark (issues 11 and 12).

    python bench/bench_gowt1.py --minutes 20 --baseline-minutes 8

Trains on sequence 01 of Fluo-N2DH-GOWT1 through train.py (U-Net base 16,
patch 256, batch 8, --max-minutes decides), each run in its own folder under
--out:

- ``instances``: all 30 SEG frames of 01, instance target (background /
  interior / boundary), unannotated nuclei of sparse frames ignored via TRA;
- ``semantic``: the same frames, ``--target semantic``; objects at prediction
  are the connected components of the foreground (today's baseline);
- ``instances-full``: the instance target on the fully annotated frames of 01
  only (021 031 033 039).

Each model is scored on the fully annotated frames of 02 (052 055 072): SEG,
AP@0.5, mean AP, PQ and count error, pooled over the three frames, with the
smallest object size of ``--min-size``: ``model`` (default: the value in the
model file, 0 for files written before it existed), ``train`` (computed from
the run's training objects as training does:
``targets.min_object_size(targets.object_areas(...))``, for a model file
that predates the field), or a number of px. Then
``predict.py --track`` runs the ``instances`` model over all 92 frames of 02
under ``/usr/bin/time -v``: DET, SEG, TRA, seconds per frame, peak memory.
Writes results.json and results.md to --out and prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import unet_tf  # noqa: E402
from unet_tf.data.targets import min_object_size, object_areas  # noqa: E402
from unet_tf.evaluation.matching import InstanceEvaluator  # noqa: E402
from unet_tf.models.file import read_info  # noqa: E402
from unet_tf.objects.instances import label_components  # noqa: E402

FULL_FRAMES = {"01": ("021", "031", "033", "039"), "02": ("052", "055", "072")}  # the fully annotated SEG frames
SEQ = {"train": "01", "test": "02"}  # --train-sequence 02 swaps them
SCORE_COLUMNS = ("seg", "ap50", "mean_ap", "pq", "n_true", "n_pred", "count_error", "count_error_rel")


def link_sequence(data: Path, dest: Path, frames: tuple[str, ...] | None) -> Path:
    """A ctc folder ``dest`` of symlinks to the training sequence: every SEG frame, or only ``frames``."""
    seq = SEQ["train"]
    src = data / seq
    if frames is None:
        dest.mkdir(parents=True, exist_ok=True)
        for name in (seq, f"{seq}_GT"):
            if not (dest / name).exists():
                (dest / name).symlink_to((data / name).resolve())
        return dest
    (dest / f"{seq}_GT" / "SEG").mkdir(parents=True, exist_ok=True)
    (dest / seq).mkdir(exist_ok=True)
    (dest / f"{seq}_GT" / "TRA").mkdir(exist_ok=True)
    for t in frames:
        pairs = (
            (src / f"t{t}.tif", dest / seq / f"t{t}.tif"),
            (data / f"{seq}_GT" / "SEG" / f"man_seg{t}.tif", dest / f"{seq}_GT" / "SEG" / f"man_seg{t}.tif"),
            (data / f"{seq}_GT" / "TRA" / f"man_track{t}.tif", dest / f"{seq}_GT" / "TRA" / f"man_track{t}.tif"),
        )
        for target, link in pairs:
            if not link.exists():
                link.symlink_to(target.resolve())
    return dest


def train(run: Path, data_dir: Path, minutes: float, steps: int, extra: list[str]) -> dict:
    """Run train.py in a subprocess unless ``run/summary.json`` exists; wall time and epochs."""
    log = run.parent / f"{run.name}.train.log"
    if not (run / "summary.json").exists():
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            "--dataset",
            "ctc",
            "--data-dir",
            str(data_dir),
            "--model",
            "unet",
            "--base-filters",
            "16",
            "--patch-size",
            "256",
            "--batch-size",
            "8",
            "--epochs",
            "1000",
            "--steps-per-epoch",
            str(steps),
            "--max-minutes",
            str(minutes),
            "--out",
            str(run),
            "--quiet",
            *extra,
        ]
        print(" ".join(cmd), flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        if rc != 0:
            raise SystemExit(f"train.py failed (exit {rc}); see {log}")
        (run / "bench_wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0, "cmd": cmd}))
    wall = json.loads((run / "bench_wall.json").read_text()) if (run / "bench_wall.json").exists() else {}
    with open(run / "history.csv") as fh:
        epochs = sum(1 for _ in csv.DictReader(fh))
    return {
        "train_wall_min": round(wall.get("wall_s", float("nan")) / 60, 2),
        "epochs": epochs,
        "steps": epochs * steps,
        "train_cmd": " ".join(wall.get("cmd", [])),
    }


def predicted_objects(model, image: np.ndarray, semantic: bool, min_size: int) -> np.ndarray:
    """(H, W) int32 objects: the model's instances, or connected components of a semantic foreground."""
    result = unet_tf.predict_image(model, image, min_size=min_size)
    if semantic:
        return label_components(result.ids > 0, min_size=min_size)
    return result.instances


def resolve_min_size(choice: str, model, data_dir: Path) -> int:
    """``--min-size``: the model file's value (0 if none), the one of the training objects, or a number."""
    if choice == "model":
        return read_info(model).min_size or 0
    if choice == "train":
        files = sorted(data_dir.glob(f"{SEQ['train']}_GT/SEG/*.tif"))
        return min_object_size(object_areas(tifffile.imread(f) for f in files))
    return int(choice)


def evaluate(run: Path, data: Path, semantic: bool, min_size: str = "model", data_dir: Path | None = None) -> dict:
    """Pooled (and per-frame) instance scores of ``run/best.keras`` on the full frames of the test sequence."""
    model = unet_tf.load_model(str(run / "best.keras"))
    size = resolve_min_size(min_size, model, data_dir)
    ev = InstanceEvaluator()
    t0 = time.perf_counter()
    seq, frames = SEQ["test"], FULL_FRAMES[SEQ["test"]]
    for t in frames:
        image = tifffile.imread(data / seq / f"t{t}.tif")
        truth = tifffile.imread(data / f"{seq}_GT" / "SEG" / f"man_seg{t}.tif")
        ev.add(t, truth, predicted_objects(model, image, semantic, size))
    seconds = (time.perf_counter() - t0) / len(frames)
    rows = {row["image"]: {k: row[k] for k in SCORE_COLUMNS} for row in ev.rows()}
    return {
        "pooled": rows["all"],
        "frames": {t: rows[t] for t in frames},
        "seconds_per_frame_eval": round(seconds, 2),
        "min_size": size,
    }


def track(run: Path, data: Path, out: Path) -> dict:
    """predict.py --track on all frames of the test sequence under /usr/bin/time -v: scores, s/frame, peak RSS."""
    seq = SEQ["test"]
    dest = out / f"track-{seq}"
    log = out / f"track-{seq}.log"
    wall_file = out / f"track-{seq}.wall"
    if not (dest / "tracking_metrics.csv").exists():
        cmd = [
            "/usr/bin/time",
            "-v",
            sys.executable,
            str(ROOT / "predict.py"),
            "--weights",
            str(run / "best.keras"),
            "--track",
            "--input",
            str(data / seq),
            "--out",
            str(dest),
        ]
        print(" ".join(cmd), flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        if rc != 0:
            raise SystemExit(f"predict.py --track failed (exit {rc}); see {log}")
        wall_file.write_text(str(time.perf_counter() - t0))
    with open(dest / "tracking_metrics.csv") as fh:
        row = next(csv.DictReader(fh))
    text = log.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = float(wall_file.read_text()) if wall_file.exists() else float("nan")
    return {
        **{k: v if k == "sequence" else _num(v) for k, v in row.items()},
        "peak_rss_mib": round(int(rss[1]) / 1024) if rss else None,
        "total_wall_s": round(wall, 1),
    }


def _num(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def machine() -> dict:
    """CPU model, core count, AVX-512 flag and the load average now."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = re.search(r"Model name:\s*(.+)", text)
    return {
        "cpu": name[1].strip() if name else platform.processor(),
        "cores": os.cpu_count(),
        "avx512": "avx512f" in text,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "tensorflow": __import__("tensorflow").__version__,
    }


def markdown(results: dict) -> str:
    """results.md: the segmentation table (pooled over the test sequence's full frames) and the tracking row."""
    lines = [
        f"| model (trained on {SEQ['train']}) | train min | epochs | min size | SEG | AP@0.5 | mean AP | PQ "
        "| true | pred | count err |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        if "pooled" not in r:
            continue
        p = r["pooled"]
        lines.append(
            f"| {name} | {r['train_wall_min']} | {r['epochs']} | {r.get('min_size', 0)} | {p['seg']:.3f} | "
            f"{p['ap50']:.3f} | "
            f"{p['mean_ap']:.3f} | {p['pq']:.3f} | {p['n_true']} | {p['n_pred']} | "
            f"{p['count_error']:+d} ({100 * p['count_error_rel']:+.1f} %) |"
        )
    tr = results.get("tracking")
    if tr:
        lines += [
            "",
            f"| tracking {SEQ['test']} (92 frames) | DET | SEG | TRA | s/frame | peak RSS MiB | tracks |",
            "|---|---|---|---|---|---|---|",
            f"| instances | {tr['DET']:.3f} | {tr['SEG']:.3f} | {tr['TRA']:.3f} | {tr['seconds_per_frame']} "
            f"| {tr['peak_rss_mib']} | {int(tr['tracks'])} |",
        ]
    m = results["machine"]
    lines += [
        "",
        f"CPU: {m['cpu']} ({m['cores']} cores, AVX-512 {'yes' if m['avx512'] else 'no'}), "
        f"load average at start {m['loadavg']}, at end {results.get('loadavg_end')}",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", type=Path, default=Path(os.environ.get("UNET_TF_DATA", "../shared/data")) / "Fluo-N2DH-GOWT1"
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench-gowt1"))
    p.add_argument("--minutes", type=float, default=30, help="training budget of the main instance model")
    p.add_argument("--baseline-minutes", type=float, help="training budget of each baseline (default --minutes)")
    p.add_argument("--steps-per-epoch", type=int, default=30)
    p.add_argument("--skip-train", action="store_true", help="reuse the models in --out; train none")
    p.add_argument("--no-track", action="store_true")
    p.add_argument(
        "--train-sequence",
        choices=("01", "02"),
        default="01",
        help="train on this sequence; score and track the other (default 01)",
    )
    p.add_argument("--skip-semantic", action="store_true", help="train no semantic baseline")
    p.add_argument("--main-only", action="store_true", help="train and score the main instance model only")
    p.add_argument("--train-flags", default="", help='more train.py flags for every model, e.g. "--depth 3"')
    p.add_argument(
        "--min-size",
        default="model",
        help="smallest object in px when scoring: 'model' (the model file's own), 'train' (from the run's "
        "training objects, as training computes it) or a number",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out, data = args.out.resolve(), args.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base_min = args.baseline_minutes or args.minutes
    SEQ.update(train=args.train_sequence, test="02" if args.train_sequence == "01" else "01")
    seq = SEQ["train"]
    all01 = link_sequence(data, out / f"data-{seq}-all", None)
    full01 = link_sequence(data, out / f"data-{seq}-full", FULL_FRAMES[seq])
    plan = [
        ("instances", all01, args.minutes, [], False),
        ("semantic + components", all01, base_min, ["--target", "semantic"], True),
        ("instances, full frames only", full01, base_min, [], False),
    ]
    results: dict = {"machine": machine(), "models": {}, "argv": sys.argv}
    for i, (name, data_dir, minutes, extra, semantic) in enumerate(plan):
        run = out / ["instances", "semantic", "instances-full"][i]
        skipped = (semantic and args.skip_semantic) or (i > 0 and args.main_only)
        if skipped or (args.skip_train and not (run / "best.keras").exists()):
            continue
        flags = extra + shlex.split(args.train_flags)
        results["models"][name] = train(run, data_dir, minutes, args.steps_per_epoch, flags)
        results["models"][name].update(evaluate(run, data, semantic, args.min_size, data_dir))
        _save(out, results)
        if i == 0 and not args.no_track:
            results["tracking"] = track(run, data, out)
            _save(out, results)
    print(markdown(results))
    return 0


def _save(out: Path, results: dict) -> None:
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.md").write_text(markdown(results))


if __name__ == "__main__":
    raise SystemExit(main())
