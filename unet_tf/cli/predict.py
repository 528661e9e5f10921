"""``python predict.py --weights best.keras``: segment images at full resolution."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet_tf.cli.common import run_main, say
from unet_tf.config import PRECISION_NAMES, PredictConfig, TrackConfig
from unet_tf.runtime import import_tensorflow


def shard_arg(text: str) -> tuple[int, int]:
    """``i/n`` -> (i, n) with 0 <= i < n; otherwise an argparse error."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n, e.g. 0/2, got '{text}'") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"'{text}': need 0 <= i < n (i counts from 0), e.g. 0/2 and 1/2")
    return index, count


def _track_args(p: argparse.ArgumentParser, t: TrackConfig) -> None:
    g = p.add_argument_group(
        "time-lapse",
        "--track: the inputs are ONE time-lapse (a folder of frames in natural name order, frame_2 "
        "before frame_10; a Cell Tracking Challenge sequence folder; or a multi-page TIFF: a hyperstack "
        "is read along its T axis); every frame is segmented into objects and the objects are linked "
        "over time (laptrack)",
    )
    g.add_argument(
        "--track",
        action="store_true",
        help="track objects through the frames: writes maskTTT.tif and "
        "res_track.txt (CTC format), tracks.csv, tracks_summary.csv, tracks.png",
    )
    g.add_argument(
        "--max-distance", type=float, default=t.max_distance, help="largest move of an object between frames, px"
    )
    g.add_argument("--max-gap", type=int, default=t.max_gap, help="frames an object may be missed and still be linked")
    g.add_argument("--no-divisions", action="store_true", help="do not detect cell divisions")
    g.add_argument("--frame-interval", type=float, help="minutes between frames: speeds in tracks.csv per minute")
    g.add_argument("--channel", type=int, help="hyperstacks with a C axis (TCYX): the channel to track, from 0")
    g.add_argument("--z", type=int, help="hyperstacks with a Z axis (TZYX): the plane to track, from 0")
    g.add_argument(
        "--gt",
        help="Cell Tracking Challenge ground truth (NN_GT folder) to score DET, SEG, TRA "
        "(default: the NN_GT folder beside a sequence folder NN, if any)",
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        help="a best.keras / last.keras written by train.py, the name of a model bundled with unet_tf "
        "(see --list-models; a file of that name wins), or the model.onnx of unet-tf-export (runs on "
        "onnxruntime, without TensorFlow), or the folder of train.py --folds K (the mean probability of its "
        "fold models); required unless --list-models",
    )
    p.add_argument(
        "--list-models",
        action="store_true",
        help="list the models bundled with unet_tf (name and one-line summary) and exit",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        default=PredictConfig().precision,
        help="compute precision of a .keras model (weights and probabilities stay float32); auto: mixed_bfloat16 "
        "only where it was measured >= 1.3x faster with masks agreeing on >= 99.9 %% of pixels (a CPU with "
        "avx512_bf16 and no AMX), else float32; the log says which and why. ONNX models run as exported",
    )


def _threshold_args(p: argparse.ArgumentParser, d: PredictConfig) -> None:
    """The probability thresholds."""
    p.add_argument(
        "--threshold",
        type=float,
        default=d.threshold,
        help="foreground probability threshold of binary models; interior seed threshold of instance models",
    )
    p.add_argument(
        "--foreground-threshold",
        type=float,
        help="instance models: interior + boundary probability above which a pixel is object (default: the "
        "model's own, calibrated on its validation images after training, else 0.5)",
    )


def _scale_args(p: argparse.ArgumentParser) -> None:
    """Pixel size, object scale and the smallest object."""
    p.add_argument(
        "--pixel-size",
        type=float,
        help="pixel size in µm: adds µm and µm² columns to objects.csv; sets the object scale of a model that "
        "knows its own",
    )
    p.add_argument(
        "--min-size",
        type=int,
        help="drop objects under this many px at the model's scale (default: the model's own, else 0)",
    )
    p.add_argument(
        "--diameter",
        type=float,
        metavar="D",
        help="the objects' typical diameter in px in the input images: each image is resized so that its objects "
        "have the model's diameter, and its outputs are brought back; without it: from --pixel-size or the "
        "files' pixel size when the model knows its own, else estimated per image from a first pass",
    )


def _blockwise_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "huge images on a Dask cluster",
        "--scheduler: predict ONE huge image (OME-Zarr, zarr or TIFF) block by block on Dask workers and write "
        "--out as OME-Zarr (image, labels/mask, labels/instances, probabilities with --save-probabilities); "
        "equal to the whole-image prediction, at the image's own scale",
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="local:N (N worker processes on this machine) or tcp://HOST:8786 (a running Dask scheduler, e.g. "
        "started by dask-jobqueue on SLURM/PBS)",
    )
    g.add_argument(
        "--block-size",
        type=int,
        help="block side in px (default 4096): at least --tile, a multiple of the model's size divisor",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an --out of the same image and settings: blocks already written are skipped",
    )


def _blockwise(args: argparse.Namespace, config: PredictConfig) -> int:
    from unet_tf.errors import UserInputError
    from unet_tf.prediction.blockwise import predict_blockwise

    if not args.input or len(args.input) != 1 or not args.out:
        raise UserInputError("--scheduler: give one image with --input and the output folder with --out")
    result = predict_blockwise(args.weights, args.input[0], args.out, config, log=say)
    say(
        f"{args.out}: {result['blocks']} block(s), {result['predicted']} predicted now, {result['table_rows']} "
        f"row(s) in objects.csv, {result['seconds']:.1f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    d, t = PredictConfig(), TrackConfig()
    p = argparse.ArgumentParser(
        prog="predict.py",
        description="Segment images with a model trained by train.py: masks, overlays, metrics, objects.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _model_args(p)
    p.add_argument(
        "--input",
        nargs="+",
        help="image files, folders or globs (default: the test images of the dataset the model was trained on)",
    )
    p.add_argument(
        "--out", help="output folder (default: <weights folder>/predictions; ./predictions for a bundled model)"
    )
    p.add_argument("--labels", help="folder of ground-truth masks (matched by name): writes metrics.csv")
    p.add_argument("--tile", type=int, default=d.tile, help="tile side in px (a multiple of the model's size divisor)")
    p.add_argument("--overlap", type=int, default=d.overlap, help="overlap of neighbouring tiles in px")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="tiles per model call")
    p.add_argument("--tta", action="store_true", help="8-fold dihedral test-time augmentation (8x slower)")
    _threshold_args(p, d)
    p.add_argument(
        "--save-probabilities", action="store_true", help="also write <stem>_prob.tif (float32, a band per class)"
    )
    p.add_argument("--no-overlay", action="store_true", help="do not write <stem>_overlay.png")
    _scale_args(p)
    p.add_argument(
        "--stream",
        action="store_true",
        help="predict in bands of rows: memory grows with the width, not the height (automatic when an image's "
        "whole-image prediction would need more than half of the memory available); no overlay; instance models "
        "and --split-touching need the whole image",
    )
    p.add_argument(
        "--split-touching",
        action="store_true",
        help="semantic models: split touching objects of a class "
        "by a distance-transform watershed; writes <stem>_instances.tif and one objects.csv row per object "
        "(instance models always do)",
    )
    _track_args(p, t)
    _blockwise_args(p)
    p.add_argument(
        "--shard",
        type=shard_arg,
        metavar="i/n",
        help="segment only every n-th image of the sorted inputs, starting at image i (0-based): run "
        "0/n .. n-1/n on n machines with the same --out; the tables of shard i are then "
        "metrics.shard-i-of-n.csv, objects.shard-i-of-n.csv and objects_summary.shard-i-of-n.csv",
    )
    return p


def config_from_args(args: argparse.Namespace) -> PredictConfig:
    return PredictConfig(
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        tta=args.tta,
        threshold=args.threshold,
        save_probabilities=args.save_probabilities,
        overlay=not args.no_overlay,
        pixel_size=args.pixel_size,
        min_size=args.min_size,
        foreground_threshold=args.foreground_threshold,
        diameter=args.diameter,
        precision=args.precision,
        split_touching=args.split_touching,
        stream=args.stream,
        shard=args.shard or (0, 1),
        scheduler=args.scheduler,
        block_size=args.block_size,
        resume=args.resume,
    )


def track_config_from_args(args: argparse.Namespace) -> TrackConfig:
    return TrackConfig(
        max_distance=args.max_distance,
        max_gap=args.max_gap,
        divisions=not args.no_divisions,
        frame_interval=args.frame_interval,
        gt=args.gt,
        channel=args.channel,
        z=args.z,
    )


def _weights_folder(weights: str) -> Path:
    """Where outputs go by default: beside the model file, or in the cross-validation folder itself."""
    return Path(weights) if Path(weights).is_dir() else Path(weights).parent


def _load(weights: str, precision: str = "float32"):
    """(model, ModelInfo) of a ``.keras`` file or a bundled model's name (TensorFlow; resolved by
    :func:`unet_tf.models.file.load_model_and_info`, computing in ``precision``, said in the log), or of a
    ``.onnx`` export (onnxruntime, no TensorFlow, as exported)."""
    if Path(weights).suffix.lower() == ".onnx":
        from unet_tf.prediction.onnx import load_onnx

        model = load_onnx(weights)
        return model, model.info
    tf = import_tensorflow()
    from unet_tf.models.file import load_model_and_info
    from unet_tf.training.precision import choose_predict_precision

    precision = choose_predict_precision(precision, len(tf.config.list_physical_devices("GPU")), log=say)
    from unet_tf.prediction.ensemble import is_folds_folder, load_ensemble

    if is_folds_folder(weights):  # train.py --folds K: the mean probability of fold-*/best.keras
        ensemble = load_ensemble(weights, precision)
        return ensemble, ensemble.info
    return load_model_and_info(weights, precision=precision)


def _track(model, args: argparse.Namespace, config: PredictConfig) -> int:
    from unet_tf.errors import UserInputError
    from unet_tf.tracking.sequence import track_sequence

    if not args.input:
        raise UserInputError("--track: give the time-lapse with --input (a folder of frames or a multi-page TIFF)")
    out = Path(args.out) if args.out else _weights_folder(args.weights) / "tracks"
    track_sequence(model, args.input, out, config, track_config_from_args(args), log=say)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; --weights is required unless --list-models (an argparse error, status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.weights and not args.list_models:
        parser.error("the following arguments are required: --weights (or --list-models)")
    return args


def list_models() -> int:
    """Print each bundled model's name and one-line summary, or that none are installed (no TensorFlow)."""
    from unet_tf.models.bundled import describe_bundled

    for line in describe_bundled():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_models:
        return run_main(list_models)

    def body() -> int:
        if (args.channel is not None or args.z is not None) and not args.track:
            from unet_tf.errors import UserInputError

            raise UserInputError("--channel / --z pick a plane of a time-lapse hyperstack: they need --track")
        config = config_from_args(args)
        if args.scheduler:  # the workers load the model; this process needs no TensorFlow
            return _blockwise(args, config)
        model, info = _load(args.weights, config.precision)
        from unet_tf.prediction.files import predict_files
        from unet_tf.prediction.inputs import check_output_names, samples_for, shard_samples

        if args.track:
            return _track(model, args, config)
        samples = samples_for(args.input, args.labels, info)
        if args.shard:
            check_output_names(samples)  # across all shards: they share the folder
            samples = shard_samples(samples, *config.shard)
        out = Path(args.out) if args.out else _weights_folder(args.weights) / "predictions"
        result = predict_files(model, samples, out, config, log=say)
        if result["failed"]:
            print(f"error: {len(result['failed'])} input(s) failed: {', '.join(result['failed'])}", file=sys.stderr)
            return 1
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
