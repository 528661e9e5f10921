"""``unet-tf-export --weights best.keras --out DIR``: ONNX, SavedModel, bioimage.io package."""

from __future__ import annotations

import argparse

from unet_tf.cli.common import run_main, say
from unet_tf.config import EXPORT_FORMAT_NAMES

FORMATS = ",".join(EXPORT_FORMAT_NAMES)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unet-tf-export",
        description="Export a model trained by train.py for onnxruntime, TensorFlow Serving, Fiji/DeepImageJ, "
        "ilastik, QuPath and napari. Each file is checked against the Keras model before it is kept.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--weights",
        required=True,
        help="a best.keras / last.keras written by train.py, or a bundled model's name (predict.py --list-models)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder: model.onnx, savedmodel/, bioimageio/ and bioimageio.zip (same-named entries are replaced)",
    )
    p.add_argument("--format", default=FORMATS, help=f"comma-separated subset of {FORMATS}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from unet_tf.export import export_model, parse_formats

        formats = parse_formats(args.format)
        export_model(args.weights, args.out, formats, log=say)
        return 0

    return run_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
