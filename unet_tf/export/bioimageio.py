"""A bioimage.io model package (model spec 0.5) for Fiji/DeepImageJ, ilastik, QuPath, napari.

The package folder holds ``rdf.yaml``, ``README.md`` (with a "Validation"
section), ``cover.png`` (test image | its segmentation overlay), the test
tensors ``test_input.npy`` (1, H, W, 1) float32 raw intensities and
``test_output.npy`` (1, H, W, K) float32 probabilities, and the weights in
three formats: ``model.keras`` (keras_v3, the bare network, root of the
others), ``model.onnx`` and ``tf_saved_model.zip``.

The expected test output is computed by unet_tf itself (its own percentile
normalization, then the Keras network), so bioimage.io's ``test_model`` checks
that ITS preprocessing (``scale_range`` with the model's percentiles) plus each
weights format reproduces unet_tf's prediction. Validation runs offline
(nothing in the package is a URL). The folder is zipped as ``<folder>.zip``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from unet_tf.config import NormalizeConfig
from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo
from unet_tf.prediction.outputs import PALETTE

TEST_SIDE = 256
UNET_CITATION = {
    "text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crop_for_test(image: np.ndarray, size_divisor: int, side: int = TEST_SIDE) -> np.ndarray:
    """Central crop of a 2-D ``image`` to at most ``side`` px, sides multiples of ``size_divisor``.

    An image smaller than ``size_divisor`` along an axis is reflect-padded up to it.
    """
    image = np.asarray(image)
    pad = [(0, max(0, size_divisor - n)) for n in image.shape]
    image = np.pad(image, pad, mode="reflect") if any(p[1] for p in pad) else image
    h, w = (min(side, n) // size_divisor * size_divisor for n in image.shape)
    y0, x0 = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[y0 : y0 + h, x0 : x0 + w]


def test_image(info: ModelInfo, side: int = TEST_SIDE) -> tuple[np.ndarray, str]:
    """A raw 2-D test image and where it came from: the model's first readable test image, else synthetic."""
    from unet_tf.io.images import read_image

    for row in info.test_images:
        try:
            image = read_image(row[0])
        except (UserInputError, OSError, IndexError):
            continue
        return crop_for_test(image, info.size_divisor, side), f"a central crop of {Path(row[0]).name}"
    from unet_tf.synthetic import generate_tem_image

    image, _ = generate_tem_image(side, seed=0)
    return crop_for_test(image, info.size_divisor, side), "a synthetic TEM image (unet_tf.synthetic, seed 0)"


def test_tensors(bare, info: ModelInfo, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(input (1, H, W, 1) float32 raw, output (1, H, W, K) float32 Keras probabilities)."""
    from unet_tf.data.normalize import percentile_normalize

    norm = info.normalize
    raw = np.asarray(image, np.float32)
    x = percentile_normalize(raw, norm.pmin, norm.pmax, clip=norm.clip)
    output = bare(x[None, :, :, None], training=False).numpy().astype(np.float32)
    return raw[None, :, :, None], output


COVER_COLOURS = np.array(PALETTE, np.float32)  # RGB, classes 1, 2, ... (predict.py's overlay colours)


def cover_image(image: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 (H, 2W): the image (1/99.5 percentile stretch) beside it with classes 1.. coloured."""
    from unet_tf.data.normalize import percentile_normalize

    gray = (np.clip(percentile_normalize(image, 1, 99.5), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    overlay = rgb.copy()
    fg = ids > 0
    colours = COVER_COLOURS[(ids[fg].astype(np.intp) - 1) % len(COVER_COLOURS)]
    overlay[fg] = ((1 - alpha) * overlay[fg] + alpha * colours).astype(np.uint8)
    return np.concatenate([rgb, overlay], axis=1)


def write_cover(path: Path, image: np.ndarray, probabilities: np.ndarray) -> Path:
    """``path`` PNG: :func:`cover_image` of the test image and its predicted classes (2:1, as bioimage.io prefers)."""
    import cv2

    from unet_tf.prediction.tiled import probabilities_to_ids

    if not cv2.imwrite(str(path), cover_image(image, probabilities_to_ids(probabilities))[..., ::-1]):
        raise UserInputError(f"{path}: could not write the cover image")
    return path


def output_channels(info: ModelInfo) -> list[str]:
    """Output channel names: P(class 1) for a one-channel (two-class, sigmoid) model, else one per class."""
    names = [str(n) for n in info.class_names]
    return [names[1]] if info.n_outputs == 1 else names


def _axes(size_divisor: int, channels: list[str], output: bool) -> list[dict]:
    if output:
        space = [{"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}} for a in ("y", "x")]
    else:
        space = [{"type": "space", "id": a, "size": {"min": size_divisor, "step": size_divisor}} for a in ("y", "x")]
    return [{"type": "batch"}, *space, {"type": "channel", "channel_names": channels}]


def _preprocessing(normalize: NormalizeConfig) -> list[dict]:
    steps = [
        {
            "id": "scale_range",
            "kwargs": {
                "axes": ["y", "x"],
                "min_percentile": float(normalize.pmin),
                "max_percentile": float(normalize.pmax),
                "eps": 1e-20,
            },
        }
    ]
    if normalize.clip:
        steps.append({"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}})
    return steps


def _file(folder: Path, name: str, **fields) -> dict:
    """A file entry of rdf.yaml: source, sha256 and any extra fields."""
    return {"source": name, "sha256": _sha256(folder / name), **fields}


def _weights(folder: Path, has_keras: bool) -> dict:
    """The weights entries; keras_v3 is the root the others were converted from (if present)."""
    import keras
    import onnx
    import tensorflow as tf

    root = "keras_v3" if has_keras else "tensorflow_saved_model_bundle"
    opset = max(o.version for o in onnx.load(str(folder / "model.onnx")).opset_import if o.domain in ("", "ai.onnx"))
    weights = {
        "onnx": _file(folder, "model.onnx", opset_version=opset, parent=root),
        "tensorflow_saved_model_bundle": _file(
            folder, "tf_saved_model.zip", tensorflow_version=tf.__version__, **({"parent": root} if has_keras else {})
        ),
    }
    if has_keras:
        weights["keras_v3"] = _file(
            folder, "model.keras", keras_version=keras.__version__, backend=["tensorflow", tf.__version__]
        )
    return weights


def _tensors(info: ModelInfo, folder: Path) -> dict:
    """The ``inputs`` and ``outputs`` entries of rdf.yaml."""
    divisor, names = info.size_divisor, [str(n) for n in info.class_names]
    if info.n_outputs == 1:
        meaning = f"one sigmoid channel, P({names[1]}); P({names[0]}) = 1 - it"
    else:
        meaning = "softmax, one channel per class"
    return {
        "inputs": [
            {
                "id": "raw",
                "description": "2-D gray image, raw intensities",
                "axes": _axes(divisor, ["raw"], False),
                "test_tensor": _file(folder, "test_input.npy"),
                "data": {"type": "float32"},
                "preprocessing": _preprocessing(info.normalize),
            }
        ],
        "outputs": [
            {
                "id": "probabilities",
                "description": f"class probabilities ({meaning})",
                "axes": _axes(divisor, output_channels(info), True),
                "test_tensor": _file(folder, "test_output.npy"),
                "data": {"type": "float32", "range": [0.0, 1.0]},
            }
        ],
    }


CONFIG_KEYS = (
    "class_values",
    "class_names",
    "normalize",
    "patch_size",
    "size_divisor",
    "label_mode",
    "model",
    "unet_tf_version",
)


def config_section(info: ModelInfo) -> dict:
    """The :data:`CONFIG_KEYS` of ``info`` as plain YAML values (tuples become lists) for rdf.yaml's ``config``."""
    values = json.loads(json.dumps(info.to_dict()))
    return {k: values[k] for k in CONFIG_KEYS}


def rdf(info: ModelInfo, folder: Path, has_keras: bool) -> dict:
    """The rdf.yaml content (spec 0.5) for the files already in ``folder``."""
    from bioimageio.spec.model.v0_5 import ModelDescr

    names = [str(n) for n in info.class_names]
    arch, dataset = info.model.model, info.dataset
    return {
        "type": "model",
        "format_version": ModelDescr.implemented_format_version,
        "name": f"unet_tf {arch} {dataset} {len(names)} classes",
        "description": f"{arch} segmentation of {', '.join(names)} ({dataset} data), "
        f"trained with unet_tf {info.unet_tf_version}".strip(),
        "authors": [{"name": "unet_tf user"}],
        "cite": [UNET_CITATION],
        "license": "MIT",
        "tags": ["unet", "segmentation", "2d", "unet_tf", "electron-microscopy" if dataset == "tem" else "microscopy"],
        "documentation": {"source": "README.md"},
        "covers": [_file(folder, "cover.png")],
        **_tensors(info, folder),
        "weights": _weights(folder, has_keras),
        "config": {"unet_tf": config_section(info)},
    }


def validate(rdf_path: Path) -> dict[str, str]:
    """bioimage.io ``test_model`` for each weights format: {format: "passed" or the first error}."""
    import yaml

    rdf_path, results = Path(rdf_path).resolve(), {}
    cwd, backend = os.getcwd(), os.environ.get("KERAS_BACKEND")
    with tempfile.TemporaryDirectory(prefix="unet_tf_bioimageio_") as work:
        # bioimageio.core unzips the SavedModel into the current folder, and its Keras loader sets
        # KERAS_BACKEND (default "torch") for the whole process and its children: keep both local.
        os.chdir(work)
        os.environ["KERAS_BACKEND"] = "tensorflow"
        try:
            from bioimageio.core import test_model

            for fmt in yaml.safe_load(rdf_path.read_text())["weights"]:
                summary = test_model(rdf_path, weight_format=fmt, devices=["cpu"], working_dir=work)
                errors = [f"{d.name}: {'.'.join(map(str, e.loc))}: {e.msg}" for d in summary.details for e in d.errors]
                passed = summary.status == "passed" and not errors
                results[fmt] = "passed" if passed else (errors or [summary.status])[0]
        finally:
            os.chdir(cwd)
            if backend is None:
                os.environ.pop("KERAS_BACKEND", None)
            else:
                os.environ["KERAS_BACKEND"] = backend
    return results


def readme(info: ModelInfo, source: str, checks: dict[str, float], results: dict[str, str]) -> str:
    """README.md of the package, with the "Validation" section."""
    import bioimageio.core

    values = ", ".join(f"{v} = {n}" for v, n in zip(info.class_values, info.class_names))
    norm = info.normalize
    lines = [
        "# unet_tf segmentation model",
        "",
        f"A {info.model.model} trained with unet_tf {info.unet_tf_version} on `{info.dataset}` data.",
        "",
        f"- Classes (label value = name): {values}.",
        f"- Output `probabilities`: {', '.join(output_channels(info))} "
        + (
            "(the probability of the foreground class; threshold 0.5)."
            if info.n_outputs == 1
            else "(argmax gives the class)."
        ),
        *(
            [
                "- Instances (unet_tf's post-processing): a seeded watershed, seeds where interior > 0.5, objects "
                f"where interior + boundary > {info.foreground_threshold or 0.5:g}"
                f"{' (calibrated on the validation images)' if info.foreground_threshold else ''}."
            ]
            if info.target == "instances"
            else []
        ),
        f"- Input `raw`: one gray channel; height and width multiples of {info.size_divisor}; "
        f"trained on {info.patch_size} px patches.",
        f"- Preprocessing: percentiles {norm.pmin} / {norm.pmax} of each image "
        f"map to 0 / 1{' (clipped)' if norm.clip else ''}.",
        "",
        "## Validation",
        "",
        f"Test input: {source}. The expected output was computed by unet_tf (its own normalization and the "
        "Keras network).",
        "",
        "| check | result |",
        "|---|---|",
        *[f"| {name} vs Keras, two random inputs | max abs difference {diff:.1e} |" for name, diff in checks.items()],
        *[
            f"| bioimageio.core {bioimageio.core.__version__} `test_model`, {fmt} | {result} |"
            for fmt, result in results.items()
        ],
        "",
        "Re-run with `bioimageio test rdf.yaml`.",
        "",
    ]
    return "\n".join(lines)


def zip_folder(folder: Path, path: Path) -> Path:
    """``folder``'s files (flat) into the zip ``path``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    return path


def write_package(
    bare, info: ModelInfo, folder: Path, onnx_path: Path, savedmodel: Path, checks: dict[str, float], log=print
) -> tuple[Path, Path]:
    """Write and validate the package ``folder`` and ``folder.zip``; returns both paths.

    Args:
        bare: keras.Model, the bare network.
        info: ModelInfo, the model's info.
        folder: Path of the package folder to create.
        onnx_path, savedmodel: Path of the already written and checked ONNX file / SavedModel folder.
        checks: {weights format: max abs difference to Keras} for the README.
        log: one line per step.

    A weights format failing bioimage.io's ``test_model`` is an ExportCheckError.
    """
    import yaml

    from unet_tf.export.checks import ExportCheckError, custom_layers

    folder.mkdir()
    image, source = test_image(info)
    x, y = test_tensors(bare, info, image)
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    write_cover(folder / "cover.png", image, y[0])
    shutil.copy2(onnx_path, folder / "model.onnx")
    zip_folder(savedmodel, folder / "tf_saved_model.zip")
    custom = custom_layers(bare)
    if custom:
        log(f"note: no keras_v3 weights in the package: layers {', '.join(custom)} need unet_tf to load")
    else:
        bare.save(folder / "model.keras")
    (folder / "README.md").write_text(readme(info, source, checks, {}))  # validation needs it; rewritten below
    rdf_path = folder / "rdf.yaml"
    rdf_path.write_text(yaml.safe_dump(rdf(info, folder, not custom), sort_keys=False))
    log("bioimage.io: running bioimageio.core test_model (offline)")
    results = validate(rdf_path)
    for fmt, result in results.items():
        log(f"bioimage.io test_model {fmt}: {result}")
    (folder / "README.md").write_text(readme(info, source, checks, results))
    failed = {f: r for f, r in results.items() if r != "passed"}
    if failed:
        fmt, result = next(iter(failed.items()))
        raise ExportCheckError(f"{folder.name}: bioimage.io test_model failed for {fmt}: {result}")
    return folder, zip_folder(folder, folder.with_suffix(".zip"))
