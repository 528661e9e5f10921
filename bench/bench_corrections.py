"""Simulated correction loop (issue 25, Cellpose 2.0's protocol) on Fluo-N2DH-GOWT1.

    python bench/bench_corrections.py --start nuclei --minutes 5 --out runs/bench-corrections
    python bench/bench_corrections.py --smoke            # a minute on synthetic data, no GOWT1 needed

Start from a model (the bundled ``nuclei`` model, or a ``best.keras`` trained on
one GOWT1 frame), "correct" the objects of 1, then 2, then 4 fully annotated
frames of sequence ``01`` (021, 031, 033, 039) by replacing the prediction with
the ground truth, fine-tune after each round with a fixed budget
(:func:`unet_tf.training.corrections.finetune_on_corrections`, from the
previous round's model, on every frame corrected so far), and score the fully
annotated frames of ``02`` (052, 055, 072; AP@0.5 and SEG, pooled) before the
first round and after each. Reports objects corrected per round and the
minutes each round took. Target: AP@0.5 >= 0.90 on ``02`` after at most ~100
corrected objects. Writes ``rows.jsonl`` and ``results.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

TRAIN_FRAMES = ("021", "031", "033", "039")  # fully annotated SEG frames of 01
TEST_FRAMES = ("052", "055", "072")  # fully annotated SEG frames of 02
ROUNDS = (1, 2, 4)


def gowt1_frames(root: Path, sequence: str, frames) -> tuple[list, list]:
    from unet_tf.io.images import read_image, read_label

    images = [read_image(root / sequence / f"t{f}.tif") for f in frames]
    labels = [read_label(root / f"{sequence}_GT" / "SEG" / f"man_seg{f}.tif") for f in frames]
    return images, labels


def smoke_frames() -> tuple[list, list, list, list, str]:
    """Synthetic TEM pairs and a tiny untrained instance model: the loop runs end to end in a minute."""
    import keras

    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info
    from unet_tf.synthetic.image import generate_tem_sample

    samples = [generate_tem_sample(128, seed=i) for i in range(6)]
    keras.utils.set_random_seed(0)
    arch = ModelConfig(base_filters=4, depth=2)
    info = ModelInfo((0, 1, 2), ("background", "interior", "boundary"), patch_size=64, size_divisor=4,
                     label_mode="instances", target="instances", model=arch)  # fmt: skip
    path = Path("runs/bench-corrections-smoke-start.keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    attach_info(build_model(arch, 3), info).save(path)
    train, test = samples[:4], samples[4:]
    return (
        [s.image for s in train],
        [s.instances for s in train],
        [s.image for s in test],
        [s.instances for s in test],
        str(path),
    )


def round_row(n_frames, objects, minutes, scores, run_dir) -> dict:
    return {"frames": n_frames, "objects_corrected": objects, "minutes": round(minutes, 2), **scores,
            "run_dir": str(run_dir)}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("UNET_TF_DATA", "data"), "Fluo-N2DH-GOWT1"))
    p.add_argument("--start", default="nuclei", help="the model to start from (a bundled name or a .keras file)")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per round")
    p.add_argument("--minutes", type=float, default=None, help="time budget per round")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--out", default="runs/bench-corrections")
    p.add_argument("--smoke", action="store_true", help="synthetic data, a tiny model, 2 steps a round")
    args = p.parse_args(argv)
    from unet_tf.config import PredictConfig
    from unet_tf.models.file import load_model_and_info
    from unet_tf.training.corrections import finetune_on_corrections, score

    if args.smoke:
        train_images, train_labels, test_images, test_labels, start = smoke_frames()
        args.steps, args.tile = 2, 128
    else:
        root = Path(args.data_dir)
        train_images, train_labels = gowt1_frames(root, "01", TRAIN_FRAMES)
        test_images, test_labels = gowt1_frames(root, "02", TEST_FRAMES)
        start = args.start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = PredictConfig(tile=args.tile, overlap=min(64, args.tile // 4))
    model, info = load_model_and_info(start)
    test = list(zip(test_images, test_labels))
    rows = [round_row(0, 0, 0.0, score(model, test, info, config), start)]
    print(json.dumps(rows[-1]))
    current, done = start, 0
    for n in ROUNDS:
        objects = sum(len(np.unique(label[label > 0])) for label in train_labels[done:n])
        t0 = time.perf_counter()
        run = finetune_on_corrections(
            current, train_images[:n], train_labels[:n], out=out / f"round-{n}", steps=args.steps,
            max_minutes=args.minutes, hold_out=0, predict=config, log=lambda line: None,
        )  # fmt: skip
        minutes = (time.perf_counter() - t0) / 60
        rows.append(round_row(n, objects, minutes, score(run.model, test, info, config), run.run_dir))
        print(json.dumps(rows[-1]))
        current, done = str(run.run_dir / "best.keras"), n
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = ["| frames corrected | objects corrected (this round) | minutes | AP@0.5 on 02 | SEG on 02 |",
             "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['frames']} | {r['objects_corrected']} | {r['minutes']} | {r['ap50']:.3f} | {r['seg']:.3f} |"
              for r in rows]  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
