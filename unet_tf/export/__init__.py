"""Take a trained model anywhere: ONNX, TensorFlow SavedModel, bioimage.io package.

Every export starts from the *bare network*: the Keras model without its
``unet_tf_info`` layer, i.e. plain Keras layers only (input float32
(B, H, W, 1) with H, W multiples of the size divisor, output (B, H, W, K)
probabilities, K = 1 for a two-class sigmoid head).

- ONNX through Keras 3's ``model.export(format="onnx")`` (tf2onnx on the
  TensorFlow backend), opset :data:`ONNX_OPSET` (DeepImageJ reads <= 18),
  dynamic batch / height / width, input ``image``, output ``probabilities``,
  the model's info in ``metadata_props`` (:mod:`unet_tf.onnx_model`). A
  leading unit axis that tf2onnx sometimes leaves on the output of a one-channel
  head, (1, B, H, W, 1), is squeezed in the graph (:mod:`.onnx_graph`).
- SavedModel through ``keras.export.ExportArchive``: endpoint ``serve``
  returning ``{"probabilities": ...}`` (bioimage.io's TF loader wants a dict).
- bioimage.io model package (spec 0.5): :mod:`unet_tf.bioimageio`.

Each written file is checked against the Keras model on two image sizes; a
difference above :data:`ATOL` is an :class:`ExportCheckError`. Everything is
written into a temporary folder beside ``out`` and moved into place only when
all formats have been written and checked: a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import UserInputError
from ..onnx_model import load_onnx, metadata_props
from .checks import ExportCheckError, custom_layers  # noqa: F401  (public here)
from .onnx_graph import name_and_label_io, squeeze_leading_unit_axes

FORMATS = ("onnx", "savedmodel", "bioimageio")
ONNX_OPSET = 17
ATOL = 1e-4
OUTPUT_NAMES = {"onnx": "model.onnx", "savedmodel": "savedmodel", "bioimageio": ("bioimageio", "bioimageio.zip")}

Log = Callable[[str], None]


def info_dict(info) -> dict:
    """The model info as a plain JSON-able dict (accepts a dict or an object with ``to_dict()``).

    The JSON round trip also turns Keras' tracked list wrappers into plain lists.
    """
    return json.loads(json.dumps(info.to_dict() if hasattr(info, "to_dict") else dict(info)))


def load_for_export(weights: str | Path):
    """(bare network, info dict) of a ``best.keras`` written by unet_tf."""
    from .. import model_file

    if Path(weights).suffix.lower() == ".onnx":
        load_onnx(weights)  # a foreign ONNX file: UserInputError "not one exported by unet_tf"
        raise UserInputError(
            f"{weights}: already an ONNX export of unet_tf; --weights takes the .keras file it came from (best.keras)"
        )
    model, info = model_file.load_model_and_info(weights)
    return model_file.bare_network(model), info_dict(info)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,savedmodel"`` -> ("onnx", "savedmodel"); an unknown name is a UserInputError."""
    names = [v.strip().lower() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UserInputError(
            f"--format {','.join(names) or repr(text)}: unknown format "
            f"{', '.join(unknown) or '(none given)'}; choose from {', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def check_sizes(size_divisor: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two (h, w) test sizes, multiples of ``size_divisor``: square and non-square.

    For ``size_divisor`` 4 or 16: (64, 64) and (96, 128).
    """
    side = max(64, -(-64 // size_divisor) * size_divisor)
    height = -(-side * 3 // (2 * size_divisor)) * size_divisor
    return (side, side), (height, max(2 * side, height + size_divisor))


def max_difference(
    reference: Callable, candidate: Callable, sizes, seed: int = 0, name: str = "exported model"
) -> float:
    """Largest |reference(x) - candidate(x)| over random float32 batches (2, h, w, 1) of ``sizes``
    (``name``, the candidate's, goes into the error when the shapes differ)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for h, w in sizes:
        x = rng.normal(0.5, 0.3, (2, h, w, 1)).astype(np.float32)
        a, b = np.asarray(reference(x), np.float32), np.asarray(candidate(x), np.float32)
        if a.shape != b.shape:
            raise ExportCheckError(f"{name} gives shape {b.shape}, Keras {a.shape}, for input {x.shape}")
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def _check(name: str, diff: float, path: Path, log: Log) -> float:
    log(f"{name}: max abs difference to Keras {diff:.2e} (limit {ATOL:.0e})")
    if not diff <= ATOL:
        raise ExportCheckError(f"{path}: {name} output differs from the Keras model by {diff:.2e} > {ATOL:.0e}")
    return diff


def keras_reference(bare) -> Callable[[np.ndarray], np.ndarray]:
    """float32 (B, h, w, 1) -> Keras probabilities float32 (B, h, w, K)."""
    return lambda x: bare(x, training=False).numpy()


def write_onnx(bare, info: dict, path: Path, opset: int = ONNX_OPSET) -> Path:
    """``bare`` as ONNX at ``path``: input ``image``, output ``probabilities``, metadata from ``info``.

    The output is (B, H, W, K) float32 even where tf2onnx leaves a leading unit
    axis on it (:mod:`unet_tf.export.onnx_graph`).
    """
    import logging

    import onnx
    import tensorflow as tf

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = [tf.TensorSpec((None, None, None, 1), tf.float32, name="image")]
    bare.export(str(path), format="onnx", input_signature=spec, opset_version=opset, verbose=False)
    proto = onnx.load(str(path))
    squeeze_leading_unit_axes(proto.graph, rank=4, source=str(path))  # tf2onnx may leave (1, B, H, W, 1)
    name_and_label_io(proto.graph)
    del proto.metadata_props[:]
    for key, value in metadata_props(info).items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "unet_tf"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def check_onnx(bare, path: Path, size_divisor: int, log: Log) -> float:
    """Compare ``path`` (onnxruntime) with ``bare`` on :func:`check_sizes`; return the max difference."""
    name = "ONNX (onnxruntime)"
    diff = max_difference(keras_reference(bare), load_onnx(path), check_sizes(size_divisor), name=f"{path}: {name}")
    return _check(name, diff, path, log)


def write_savedmodel(bare, path: Path) -> Path:
    """``bare`` as a SavedModel folder with endpoint ``serve``: image -> {"probabilities": ...}."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(bare)
    archive.add_endpoint(
        name="serve",
        fn=lambda image: {"probabilities": bare(image, training=False)},
        input_signature=[tf.TensorSpec((None, None, None, 1), tf.float32, name="image")],
    )
    archive.write_out(str(path), verbose=False)
    return path


def check_savedmodel(bare, path: Path, size_divisor: int, log: Log) -> float:
    """Reload ``path`` with ``tf.saved_model.load`` and compare with ``bare``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    name = "SavedModel (tf.saved_model.load)"
    diff = max_difference(
        keras_reference(bare),
        lambda x: loaded.serve(x)["probabilities"].numpy(),
        check_sizes(size_divisor),
        name=f"{path}: {name}",
    )
    return _check(name, diff, path, log)


def _staging_dir(out: Path) -> Path:
    """A new temporary folder beside ``out`` (UserInputError if that place is not writable)."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a folder")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserInputError(f"--out {out}: cannot write here ({blocker} is a file, not a folder)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write here ({exc.strerror})") from None


def _publish(staging: Path, names: Sequence[str], out: Path) -> list[Path]:
    """Move ``names`` from ``staging`` into ``out`` (replacing same-named entries)."""
    if not out.exists():
        staging.rename(out)
        return [out / n for n in names]
    done = []
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        (staging / name).replace(target)
        done.append(target)
    return done


def export_model(
    weights: str | Path, out: str | Path, formats: Sequence[str] = FORMATS, log: Log = print
) -> list[Path]:
    """Export ``weights`` (a unet_tf ``.keras``) to ``out`` in ``formats``; returns the written paths.

    Args:
        weights: str or Path of a ``best.keras`` written by unet_tf.
        out: str or Path, the output folder (created; same-named entries replaced).
        formats: names from :data:`FORMATS`. Default all three.
        log: called with one line per step. Default ``print``.

    Writes ``model.onnx``, ``savedmodel/``, and ``bioimageio/`` + ``bioimageio.zip``.
    """
    formats = parse_formats(formats)
    out = Path(out)
    staging = _staging_dir(out)
    try:
        bare, info = load_for_export(weights)
        names = _write_all(bare, info, staging, formats, log)
        return _publish(staging, names, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write_all(bare, info: dict, staging: Path, formats: Sequence[str], log: Log) -> list[str]:
    """Write the requested formats into ``staging``; return the top-level names to publish."""
    work = staging / "work"
    work.mkdir()
    divisor = int(info["size_divisor"])
    need_onnx = "onnx" in formats or "bioimageio" in formats
    need_sm = "savedmodel" in formats or "bioimageio" in formats
    checks = {}
    if need_onnx:
        onnx_path = write_onnx(bare, info, work / "model.onnx")
        checks["onnx"] = check_onnx(bare, onnx_path, divisor, log)
    if need_sm:
        sm_path = write_savedmodel(bare, work / "savedmodel")
        checks["tensorflow_saved_model_bundle"] = check_savedmodel(bare, sm_path, divisor, log)
    names = []
    if "onnx" in formats:
        shutil.copy2(onnx_path, staging / "model.onnx")
        names.append("model.onnx")
    if "savedmodel" in formats:
        shutil.copytree(sm_path, staging / "savedmodel")
        names.append("savedmodel")
    if "bioimageio" in formats:
        from .bioimageio import write_package

        write_package(bare, info, staging / "bioimageio", onnx_path, sm_path, checks, log)
        names += ["bioimageio", "bioimageio.zip"]
    shutil.rmtree(work)
    for name in names:
        log(f"wrote {name}")
    return names
