"""``python train.py``: train a U-Net / Deep ResUNet on a dataset layout.

TensorFlow is imported only after the arguments are parsed, so ``--help`` and
argument errors are quick.
"""

from __future__ import annotations

import argparse
import sys

from unet_tf.cli.common import int_list, run_main, say, str_list
from unet_tf.config import (
    BUDGET_NAMES,
    DATASET_NAMES,
    LOSS_NAMES,
    LR_SCHEDULE_NAMES,
    MODEL_NAMES,
    PRECISION_NAMES,
    STRATEGY_NAMES,
    TARGET_NAMES,
    UPSAMPLING_NAMES,
    AblationConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    config_from_settings,
    nest_settings,
    read_settings_file,
)
from unet_tf.errors import UserInputError
from unet_tf.runtime import import_tensorflow


def on_off_list(text: str) -> tuple[bool, ...]:
    """``on,off`` -> (True, False); also yes/no, true/false, 1/0."""
    words = {"on": True, "yes": True, "true": True, "1": True, "off": False, "no": False, "false": False, "0": False}
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in words]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"expected on, off or on,off, got '{text}'")
    return tuple(dict.fromkeys(words[v] for v in values))


def _data_args(p: argparse.ArgumentParser, d: DataConfig) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help=f"layout: {', '.join(DATASET_NAMES)} (default {d.dataset})")
    g.add_argument(
        "--data-dir", help="dataset folder (default $UNET_TF_DATA/<dataset>, UNET_TF_DATA defaults to data/)"
    )
    g.add_argument("--class-values", type=int_list, help="label values of the classes, class 0 first, e.g. 0,255")
    g.add_argument("--class-names", type=str_list, help="names of the classes, comma separated")
    g.add_argument("--train-size", type=int, help="use only N training images, chosen by the seed (default all)")
    g.add_argument(
        "--holdout",
        type=int,
        help="keep the last N labelled training images (by name) out of training "
        "as the test set; predict.py then evaluates on them by default (default 0)",
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        help=f"fraction of training images held out for validation (default {d.val_fraction})",
    )
    g.add_argument(
        "--patch-size",
        type=int,
        help="training patch side in px (default: planned from the data: 256, or 4 object diameters when larger)",
    )
    g.add_argument(
        "--patches-per-image", type=int, help=f"random patches per image per epoch (default {d.patches_per_image})"
    )
    g.add_argument(
        "--oversample-rare",
        type=float,
        help=f"probability a patch is centred on a rare class (default {d.oversample_rare})",
    )
    g.add_argument(
        "--balance-background",
        action="store_true",
        help="patch shares of bright-background (brightfield, stained) and dark-background (fluorescence) "
        "images in proportion to the square root of their counts, not each image equally",
    )
    g.add_argument("--pmin", type=float, help=f"lower percentile of contrast stretching (default {d.normalize.pmin})")
    g.add_argument("--pmax", type=float, help=f"upper percentile of contrast stretching (default {d.normalize.pmax})")
    g.add_argument("--no-augment", action="store_true", help="turn every augmentation off")


def _object_args(p: argparse.ArgumentParser, d: DataConfig) -> None:
    g = p.add_argument_group(
        "objects",
        "instance segmentation: the network learns background / interior / boundary of each object, and "
        "prediction splits touching objects; partial annotations count only where annotated",
    )
    g.add_argument(
        "--target",
        choices=TARGET_NAMES,
        help="what the network learns: auto means instances for ctc and "
        "dsb2018 (and folder with --instance-masks), semantic otherwise (default auto)",
    )
    g.add_argument("--instance-masks", action="store_true", help="folder layout: each mask holds one id per object")
    g.add_argument(
        "--boundary-width",
        type=int,
        help="px of an object's edge that form its boundary class (default: planned from the objects: 2 for "
        "objects 10-64 px across)",
    )
    g.add_argument(
        "--border-weight",
        type=float,
        help="w0 of the U-Net separation-border loss weight between "
        f"touching objects; 0 = off (default {d.border_weight:g})",
    )
    g.add_argument(
        "--border-sigma",
        type=float,
        help="sigma of that weight in px (default: planned from the objects: 5 for objects 10-64 px across)",
    )
    g.add_argument(
        "--object-diameter",
        type=float,
        help="resize each training image so its objects' median diameter is this many px: one scale for a set "
        "of mixed magnifications; prediction brings every image to it (default: images keep their scale)",
    )
    g.add_argument(
        "--ignore-value",
        type=int,
        help="folder layout: label value of pixels that count in no loss and no metric (unannotated regions)",
    )


def _model_args(p: argparse.ArgumentParser, m: ModelConfig) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODEL_NAMES, help=f"architecture (default {m.model})")
    g.add_argument("--base-filters", type=int, help=f"filters of the first level (default {m.base_filters})")
    g.add_argument(
        "--depth",
        type=int,
        help="number of 2x downsamplings (default 4 for unet, 3 for resunet, more when the objects need a larger "
        "receptive field: planned from the data)",
    )
    g.add_argument("--upsampling", choices=UPSAMPLING_NAMES, help=f"decoder upsampling (default {m.upsampling})")
    g.add_argument("--dropout", type=float, help=f"dropout at the bottleneck (default {m.dropout})")
    g.add_argument("--attention", action="store_true", help="self-attention block at the bottleneck")


def _training_args(p: argparse.ArgumentParser, t: TrainConfig) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help=f"maximum epochs (default {t.epochs})")
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        help="optimizer steps per epoch (default: one pass over patches-per-image x images)",
    )
    g.add_argument("--batch-size", type=int, help=f"patches per step (default {t.batch_size})")
    g.add_argument("--lr", type=float, help=f"Adam learning rate (default {t.lr})")
    g.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULE_NAMES,
        help="cosine: linear warm-up over the first 5 %% of the run (its steps, or --max-minutes), then cosine "
        "decay to 5 %% of --lr; constant: "
        f"--lr until the validation loss plateaus (both halve the rate on plateaus) (default {t.lr_schedule})",
    )
    g.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        help="auto: mixed_bfloat16 where the CPU has avx512_bf16 or AMX and no GPU is used, else float32; the saved "
        f"model predicts in float32 either way (default {t.precision})",
    )
    g.add_argument("--loss", choices=LOSS_NAMES, help="auto: weighted BCE/CE + Tversky (default auto)")
    g.add_argument("--tversky-alpha", type=float, help=f"Tversky weight of false positives (default {t.tversky_alpha})")
    g.add_argument("--tversky-beta", type=float, help=f"Tversky weight of false negatives (default {t.tversky_beta})")
    g.add_argument("--max-minutes", type=float, help="stop after the epoch that crosses this wall time")
    g.add_argument("--seed", type=int, help=f"seed of subset, split, patches, augmentation, weights (default {t.seed})")
    g.add_argument("--out", help="run folder (default runs/<dataset>-<model>-<time>)")
    g.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out from its last finished epoch"
    )
    g.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs")
    g.add_argument(
        "--init-from",
        metavar="MODEL.keras",
        help="fine-tune: start from a trained model's weights (a .keras file or a bundled model's name) and "
        "architecture; another class count replaces its head (said); the run records the parent",
    )
    g.add_argument(
        "--freeze-encoder",
        dest="freeze_encoder_epochs",
        type=int,
        metavar="N",
        help="with --init-from: train only the decoder and head for the first N epochs (default 0)",
    )
    g = p.add_argument_group(
        "scale out",
        "tf.distribute: with R replicas (GPUs, or machines x GPUs) a step takes --batch-size patches on each "
        "replica, R x --batch-size in all; --lr is used as given (scale it yourself for the linear-scaling rule)",
    )
    g.add_argument(
        "--strategy",
        choices=STRATEGY_NAMES,
        help="auto: all GPUs of this machine when it has more than one, else one device; none: one "
        "device; mirrored: all GPUs of this machine; multiworker: the machines listed in the TF_CONFIG "
        "environment variable (start the same command on each; worker 0 writes the run folder) "
        f"(default {t.strategy})",
    )


def _ablation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "ablation",
        "train a grid of runs (training-set sizes x augmentation x models x repeats), each tested on the same "
        "held-out images; the flags above set the base of every run; writes ablation.csv, ablation_summary.csv, "
        "ablation.md, ablation.png and cells/<run>/ under --out (default runs/ablation-<dataset>); "
        "the same command again skips finished runs",
    )
    g.add_argument("--ablation", action="store_true", help="run the training-set-size ablation grid")
    g.add_argument(
        "--train-sizes",
        type=int_list,
        metavar="N,N,...",
        help="labelled images per run (training + validation), e.g. 5,10,25,50",
    )
    g.add_argument(
        "--augment",
        dest="augment_settings",
        type=on_off_list,
        metavar="on,off",
        help="augmentation settings to compare: on, off or on,off (default on,off; off with --no-augment)",
    )
    g.add_argument("--repeats", type=int, metavar="R", help="runs per setting, seeds --seed, --seed+1, ... (default 1)")
    g.add_argument(
        "--ablation-models",
        type=str_list,
        metavar="MODEL,...",
        help="architectures to compare, e.g. unet,resunet (default --model)",
    )
    g.add_argument(
        "--budget",
        choices=BUDGET_NAMES,
        help="steps: every run gets the same optimizer steps (--epochs x --steps-per-epoch, or "
        "--budget-steps; without either, --epochs passes over the largest size); epochs: --epochs "
        "passes over each run's own patches (default steps)",
    )
    g.add_argument("--budget-steps", type=int, metavar="N", help="optimizer steps of every run under --budget steps")


def _runs_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cross-validation; many runs on a Dask cluster")
    g.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="train K >= 2 models, each validated on the fold of the training images it did not train on (stacks "
        "and sequences stay whole); writes fold-1 .. fold-K, folds.csv, folds_summary.json (mean, std, min, max) "
        "under --out (default runs/folds-<dataset>); the same command again skips finished folds",
    )
    g.add_argument(
        "--ensemble",
        action="store_true",
        help="with --folds: then predict the test images (--holdout, else the dataset's test split) with the mean "
        "probability of the K models into <out>/ensemble",
    )
    g.add_argument(
        "--scheduler",
        metavar="local:N|tcp://HOST:PORT",
        help="with --folds or --ablation: every run a Dask task, one per worker; local:N: N worker processes here, "
        "tcp://HOST:8786: a running scheduler (dask-jobqueue's on SLURM/PBS; workers must see data and --out)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a segmentation network on labelled microscopy images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    _data_args(p, DataConfig())
    _object_args(p, DataConfig())
    _model_args(p, ModelConfig())
    _training_args(p, TrainConfig())
    _ablation_args(p)
    _runs_args(p)
    p.add_argument(
        "--config",
        help="YAML or JSON file of settings (flat keys like epochs: 5, or sections data/model/train); "
        "flags override it",
    )
    p.add_argument("--quiet", action="store_true", help="no per-step progress bar (one line per epoch)")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults <- --config file <- flags (the same merge as :func:`unet_tf.load_config`)."""
    flags = vars(args).copy()
    flags.pop("quiet", None)
    path = flags.pop("config", None)
    file_values = nest_settings(read_settings_file(path), path) if path else {}
    return config_from_settings(file_values, nest_settings(flags, "flags"))


_ABLATION_FLAGS = {
    "ablation": "--ablation",
    "train_sizes": "--train-sizes",
    "augment_settings": "--augment",
    "repeats": "--repeats",
    "ablation_models": "--ablation-models",
    "budget": "--budget",
    "budget_steps": "--budget-steps",
}


def pop_ablation_args(args: argparse.Namespace) -> dict:
    """Remove the ablation flags from ``args`` (the rest is the run configuration).

    A flag without --ablation is an error.
    """
    values = {dest: vars(args).pop(dest) for dest in list(_ABLATION_FLAGS) if dest in vars(args)}
    if values and not values.get("ablation"):
        raise UserInputError(f"{_ABLATION_FLAGS[next(iter(values))]}: needs --ablation")
    return values


def ablation_config(ablation: dict, no_augment: bool) -> AblationConfig:
    """The grid the ablation flags ask for (defaults from :class:`AblationConfig`)."""
    if "train_sizes" not in ablation:
        raise UserInputError("--ablation: give --train-sizes, e.g. --train-sizes 5,10,25")
    default = AblationConfig()
    return AblationConfig(
        train_sizes=ablation["train_sizes"],
        augment=ablation.get("augment_settings", (False,) if no_augment else default.augment),
        models=ablation.get("ablation_models"),
        repeats=ablation.get("repeats", default.repeats),
        budget=ablation.get("budget", default.budget),
        budget_steps=ablation.get("budget_steps"),
    )


def pop_runs_args(args: argparse.Namespace, ablation: bool) -> dict:
    """Remove --folds, --ensemble and --scheduler from ``args``; refuse combinations that mean nothing."""
    values = {dest: vars(args).pop(dest) for dest in ("folds", "ensemble", "scheduler") if dest in vars(args)}
    if values.get("ensemble") and "folds" not in values:
        raise UserInputError("--ensemble: needs --folds K")
    if "folds" in values and ablation:
        raise UserInputError("--folds: cross-validates one configuration; not with --ablation")
    if "scheduler" in values and not ablation and "folds" not in values:
        raise UserInputError("--scheduler: needs --folds or --ablation (one run scales with --strategy)")
    return values


def run_ablation_from_args(cfg: RunConfig, grid: AblationConfig, quiet: bool, scheduler: str | None = None) -> int:
    import_tensorflow()
    from unet_tf.ablation import run_ablation

    out = cfg.train.out or f"runs/ablation-{cfg.data.dataset}"
    run_ablation(cfg, grid, out_dir=out, verbose=2 if quiet else "auto", scheduler=scheduler)
    return 0


def run_folds_from_args(cfg: RunConfig, runs: dict, quiet: bool) -> int:
    import_tensorflow()
    from unet_tf.ablation.folds import run_folds

    out, verbose = cfg.train.out or f"runs/folds-{cfg.data.dataset}", 2 if quiet else "auto"
    scheduler, ensemble = runs.get("scheduler"), runs.get("ensemble", False)
    run_folds(cfg, runs["folds"], out, log=say, verbose=verbose, scheduler=scheduler, ensemble=ensemble)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)

    def body() -> int:
        ablation = pop_ablation_args(args)
        runs = pop_runs_args(args, bool(ablation))
        cfg = config_from_args(args)
        many = "--ablation" if ablation else "--folds" if "folds" in runs else None
        if many and cfg.train.strategy == "multiworker":
            raise UserInputError(f"{many}: not available with --strategy multiworker (mirrored works)")
        if ablation:
            grid = ablation_config(ablation, getattr(args, "no_augment", False))
            return run_ablation_from_args(cfg, grid, quiet, runs.get("scheduler"))
        if "folds" in runs:
            return run_folds_from_args(cfg, runs, quiet)
        import_tensorflow()
        from unet_tf.training.run import train

        # the run log names parameters as the library does (`train.precision`): this command line says flags
        summary = train(cfg, log=say, verbose=2 if quiet else "auto")
        if cfg.train.strategy == "multiworker":
            from unet_tf.training.distribute import worker_info

            if not worker_info().is_chief:
                print(f"\nworker {worker_info().index} done; the chief writes the run folder")
                return 0
        best = summary.best
        print(f"\nbest epoch {summary.best_epoch} of {summary.epochs_run} ({summary.wall_seconds:.0f} s):")
        for key in sorted(k for k in best if k.startswith("dice")):
            print(f"  validation {key:<28s} {best[key]:.4f}")
        print(f"\nnext: python predict.py --weights {summary.run_dir}/best.keras")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
