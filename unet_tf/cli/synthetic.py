"""Command line: write the synthetic nerve-TEM demo dataset (``python -m unet_tf.synthetic --out DIR``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from unet_tf.errors import UserInputError
from unet_tf.synthetic import write_tem_dataset


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag with its default)."""
    parser = argparse.ArgumentParser(
        prog="python -m unet_tf.synthetic",
        description="Write the synthetic nerve-TEM demo dataset (tem layout: train/ and test/ with "
        "raw_XX.tif, label_XX.tif and inst_XX.tif).",
    )
    parser.add_argument("--out", required=True, help="dataset folder to write (train/, test/)")
    parser.add_argument("--n-train", type=int, default=12, help="training images (default: 12)")
    parser.add_argument("--n-test", type=int, default=2, help="test images (default: 2)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default: 1024)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument(
        "--no-instances",
        action="store_true",
        help="do not write the instance id images inst_XX.tif (default: write them)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), write the dataset, print where; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        info = write_tem_dataset(
            args.out, args.n_train, args.n_test, args.size, args.seed, instances=not args.no_instances
        )
    except UserInputError as err:
        parser.exit(2, f"error: {err}\n")
    print(
        f"wrote {info['n_train']} train + {info['n_test']} test synthetic TEM images "
        f"({info['size'][0]}x{info['size'][1]}, seed {info['seed']}) to {Path(info['root']).resolve()}"
    )
    return 0
