"""What every command line shares: one-line errors in flag words, and comma lists.

The library names parameters (`train.lr`, `tile`: :mod:`unet_tf.errors`);
:data:`PARAMETER_FLAGS` is the one table that turns them into this command
line's flags, for errors and notes alike.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

from unet_tf.errors import UserInputError, note_run


def _fields(section: str, *names: str) -> dict[str, str]:
    """``section.name`` -> ``--name`` with dashes, for fields named like their flags."""
    return {f"{section}.{n}": "--" + n.replace("_", "-") for n in names}


PARAMETER_FLAGS: dict[str, str] = {
    **_fields(
        "data",
        "dataset",
        "data_dir",
        "class_values",
        "class_names",
        "train_size",
        "holdout",
        "val_fraction",
        "patch_size",
        "patches_per_image",
        "oversample_rare",
        "balance_background",
        "target",
        "instance_masks",
        "boundary_width",
        "border_weight",
        "border_sigma",
        "ignore_value",
        "object_diameter",
    ),
    "data.normalize.pmin": "--pmin",
    "data.normalize.pmax": "--pmax",
    "data.augment.enabled": "--no-augment",
    **_fields("model", "model", "base_filters", "depth", "upsampling", "dropout", "attention"),
    **_fields(
        "train",
        "epochs",
        "steps_per_epoch",
        "batch_size",
        "lr",
        "lr_schedule",
        "precision",
        "loss",
        "tversky_alpha",
        "tversky_beta",
        "max_minutes",
        "seed",
        "out",
        "resume",
        "tensorboard",
        "init_from",
        "strategy",
    ),
    "train.freeze_encoder_epochs": "--freeze-encoder",
    **_fields("ablation", "train_sizes", "repeats", "budget", "budget_steps"),
    "ablation.augment": "--augment",
    "ablation.models": "--ablation-models",
    "ablation": "--ablation",
    **_fields(
        "predict",
        "tile",
        "overlap",
        "batch_size",
        "tta",
        "threshold",
        "save_probabilities",
        "pixel_size",
        "min_size",
        "split_touching",
        "stream",
        "shard",
        "diameter",
        "scheduler",
        "block_size",
        "resume",
        "precision",
    ),
    "predict.overlay": "--no-overlay",
    **_fields("track", "max_distance", "max_gap", "frame_interval", "gt", "channel", "z"),
    "track.divisions": "--no-divisions",
    # arguments of the library functions behind the commands
    "model_file": "--weights",
    "weights": "--weights",
    "out": "--out",
    "inputs": "--input",
    "labels_dir": "--labels",
    "out_dir": "--out",
    "track": "--track",
    "folds": "--folds",
    "ensemble": "--ensemble",
    "formats": "--format",
    "config_file": "--config",
}
# predict_image / predict_files take every PredictConfig field as a keyword argument too (`tile`, `diameter`)
PARAMETER_FLAGS.update({k.removeprefix("predict."): v for k, v in PARAMETER_FLAGS.items() if k.startswith("predict.")})

_PARAMETER = re.compile(r"`([a-z][a-z0-9_.]*)`")


def flag_words(text: str) -> str:
    """``text`` with every parameter in backticks that has a flag written as that flag.

    >>> flag_words("loss diverged; try a smaller `train.lr`")
    'loss diverged; try a smaller --lr'
    """
    return _PARAMETER.sub(lambda m: PARAMETER_FLAGS.get(m.group(1), m.group(0)), text)


def say(line: str) -> None:
    """The commands' ``log``: print a progress line of the library in flag words."""
    print(flag_words(line))


def run_main(body: Callable[[], int | None]) -> int:
    """Run ``body``; a user mistake prints one line ``error: ...`` and returns 2.

    Bodies call :func:`unet_tf.runtime.import_tensorflow` before their
    heavy imports, after checking what can be checked without TensorFlow.
    The command is one run of notes (:mod:`unet_tf.errors`): each said once,
    with a count at the end. Errors and notes name flags (:func:`flag_words`).
    """
    try:
        with note_run(words=flag_words):
            return int(body() or 0)
    except UserInputError as exc:
        print(f"error: {flag_words(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def int_list(text: str) -> tuple[int, ...]:
    """``5,10,25`` -> (5, 10, 25); a bad list is an argparse error (one line, status 2)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'")
    return values


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())
