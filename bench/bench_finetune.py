"""Fine-tuning benchmark: ISBI 2012 with 2 labelled slices, from the synthetic TEM model vs from scratch.

    UNET_TF_DATA=/work/shared/data python bench/bench_finetune.py --seeds 0 1 --epochs 10 --steps-per-epoch 20

Training on slices 00 and 01, validation on 02 (best.keras is chosen on it),
test Dice of the membrane class on the hold-out slices 25-29 (per-image mean,
then mean +- std over seeds). Both arms train the same architecture with the
same seeds, settings and step budget; the fine-tuning arm starts from a
U-Net trained on the synthetic TEM demo set (``--parent``, or trained here:
``--parent-steps`` steps on 8 synthetic 256 px images). TEM has 5 classes and
ISBI 2, so the head is replaced; TEM is 16-bit and ISBI 8-bit, both go through
the same percentile normalization. Writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import unet_tf  # noqa: E402
from unet_tf.data.labels import read_class_ids  # noqa: E402
from unet_tf.data.layouts import dataset_spec, list_samples  # noqa: E402
from unet_tf.data.splits import TrainingData  # noqa: E402
from unet_tf.training import run as training  # noqa: E402
from unet_tf.training.finetune import FreezeEncoder, init_from, with_parent_architecture  # noqa: E402

TRAIN, VAL, TEST = ("00", "01"), ("02",), ("25", "26", "27", "28", "29")


def train_parent(out: Path, args) -> Path:
    """A small U-Net on the synthetic TEM demo set; returns its best.keras."""
    run = out / "parent"
    if (run / "best.keras").exists():
        return run / "best.keras"
    from unet_tf.synthetic import write_tem_dataset

    tem = out / "tem"
    if not (tem / "train").is_dir():
        write_tem_dataset(tem, n_train=8, n_test=1, size=256, seed=0)
    epochs = max(1, args.parent_steps // args.steps_per_epoch)
    cfg = unet_tf.load_config(
        None,
        dataset="tem",
        data_dir=str(tem),
        base_filters=args.base_filters,
        patch_size=args.patch_size,
        epochs=epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        early_stopping_patience=epochs,
        out=str(run),
        seed=0,
    )
    unet_tf.train(cfg, verbose=2)
    return run / "best.keras"


def isbi_data(data_dir: Path) -> TrainingData:
    """Slices 00-01 train, 02 validation, 25-29 test."""
    samples = {s.image.stem: s for s in list_samples("isbi2012", data_dir, "train")}
    pick = lambda names: tuple(samples[n] for n in names)  # noqa: E731
    return TrainingData(dataset_spec("isbi2012"), pick(TRAIN), pick(VAL), pick(TEST), data_dir)


@contextlib.contextmanager
def initialised_from(parent: Path | None, records: list):
    """While active, the training phase ``compile_model`` also copies the parent's weights."""
    compile_model = training.compile_model
    if parent is None:
        yield
        return

    def compile_and_init(cfg, info, spec, balance):
        model = compile_model(cfg, info, spec, balance)
        records.append(init_from(model, parent))
        return model

    training.compile_model = compile_and_init
    try:
        yield
    finally:
        training.compile_model = compile_model


def test_dice(run: Path, data: TrainingData) -> list[float]:
    """Membrane Dice of best.keras on each test slice."""
    model = unet_tf.load_model(run / "best.keras")
    membrane = data.spec.class_names.index("membrane")
    scores = []
    for sample in data.test:
        result = unet_tf.predict_image(model, unet_tf.read_image(sample.image), tile=256, overlap=32)
        rows = unet_tf.evaluate(read_class_ids(sample, data.spec), result.ids, data.spec.class_names)
        scores.append(rows[membrane]["dice"])
    return scores


def run_arm(name: str, parent: Path, seed: int, out: Path, data: TrainingData, args) -> dict:
    run = out / f"{name}-seed{seed}"
    cfg = unet_tf.load_config(
        None,
        dataset="isbi2012",
        data_dir=str(data.data_dir),
        patch_size=args.patch_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        early_stopping_patience=args.epochs,
        out=str(run),
    )
    cfg = with_parent_architecture(cfg, parent)  # the same network in both arms
    records: list = []
    extra = [FreezeEncoder(args.freeze_encoder)] if name == "finetune-freeze" else []
    if not (run / "summary.json").exists():
        with initialised_from(None if name == "scratch" else parent, records):
            training.train(cfg, data=data, verbose=2, extra_callbacks=extra)
    summary = json.loads((run / "summary.json").read_text())
    dice = test_dice(run, data)
    print(
        f"{name} seed {seed}: test membrane Dice {np.mean(dice):.4f} ({', '.join(f'{d:.3f}' for d in dice)}), "
        f"best epoch {summary['best_epoch']}, {summary['wall_seconds']:.0f} s",
        flush=True,
    )
    return {
        "arm": name,
        "seed": seed,
        "test_dice": dice,
        "mean": float(np.mean(dice)),
        "init": records,
        "best_epoch": summary["best_epoch"],
        "val_dice": summary["best"].get("dice"),
        "wall_seconds": summary["wall_seconds"],
    }


def cpu_line() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")
    return f"{model}, {os.cpu_count()} logical CPUs, avx512f {'yes' if 'avx512f' in text else 'no'}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("UNET_TF_DATA", "../shared/data"), "isbi2012"))
    p.add_argument("--parent", help="a TEM model (.keras) to fine-tune from (default: train one here)")
    p.add_argument("--parent-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--base-filters", type=int, default=8, help="of the parent trained here")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--freeze-encoder",
        type=int,
        default=0,
        help="N > 0: a third arm, fine-tuned with the encoder frozen for the first N epochs",
    )
    p.add_argument("--out", default="runs/bench-finetune")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parent = Path(args.parent) if args.parent else train_parent(out, args)
    data = isbi_data(Path(args.data_dir))
    arms = ["scratch", "finetune"] + (["finetune-freeze"] if args.freeze_encoder else [])
    results = [run_arm(arm, parent, seed, out, data, args) for seed in args.seeds for arm in arms]
    (out / "results.json").write_text(
        json.dumps({"cpu": cpu_line(), "args": vars(args), "results": results}, indent=2) + "\n"
    )
    steps = args.epochs * args.steps_per_epoch
    print("\n| arm | seeds | steps | test membrane Dice 25-29 (mean ± std over seeds) | per seed |")
    print("|---|---|---|---|---|")
    for arm in arms:
        means = [r["mean"] for r in results if r["arm"] == arm]
        print(
            f"| {arm} | {len(means)} | {steps} | {np.mean(means):.4f} ± {np.std(means):.4f} | "
            f"{', '.join(f'{m:.4f}' for m in means)} |"
        )
    print(f"\nparent: {parent}; CPU: {cpu_line()}")
    print("command: python bench/bench_finetune.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
