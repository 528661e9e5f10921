"""One export: load the bare network, write and check every requested format in a staging folder, then publish."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from unet_tf.config import EXPORT_FORMAT_NAMES
from unet_tf.errors import UserInputError
from unet_tf.export.checks import Log
from unet_tf.export.onnx import check_onnx, write_onnx
from unet_tf.export.savedmodel import check_savedmodel, write_savedmodel
from unet_tf.models.bundled import resolve_weights
from unet_tf.models.file import ModelInfo, bare_network, load_model_and_info
from unet_tf.prediction.onnx import load_onnx


def load_for_export(weights: str | Path) -> tuple[Any, ModelInfo]:
    """(bare network, its :class:`~unet_tf.models.file.ModelInfo`) of a ``best.keras`` written by unet_tf.

    ``weights`` may also name a bundled model (``nuclei``,
    :func:`unet_tf.models.bundled.resolve_weights`); an existing file of that name wins.
    """
    if Path(weights).suffix.lower() == ".onnx":
        load_onnx(weights)  # a foreign ONNX file: UserInputError "not one exported by unet_tf"
        raise UserInputError(
            f"{weights}: already an ONNX export of unet_tf; `weights` takes the .keras file it came from (best.keras)"
        )
    model, info = load_model_and_info(resolve_weights(weights, parameter="weights"))
    return bare_network(model), info


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,savedmodel"`` -> ("onnx", "savedmodel"); an unknown name is a UserInputError."""
    names = [v.strip().lower() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    unknown = [n for n in names if n not in EXPORT_FORMAT_NAMES]
    if unknown or not names:
        raise UserInputError(
            f"`formats` {','.join(names) or repr(text)}: unknown format "
            f"{', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORT_FORMAT_NAMES)}"
        )
    return tuple(dict.fromkeys(names))


def _staging_dir(out: Path) -> Path:
    """A new temporary folder beside ``out`` (a UserInputError naming `out` if that place is not writable)."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"`out` {out}: exists and is not a folder")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserInputError(f"`out` {out}: cannot write here ({blocker} is a file, not a folder)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise UserInputError(f"`out` {out}: cannot write here ({exc.strerror})") from None


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
    weights: str | Path, out: str | Path, formats: Sequence[str] = EXPORT_FORMAT_NAMES, log: Log = print
) -> list[Path]:
    """Export ``weights`` (a unet_tf ``.keras``) to ``out`` in ``formats``; returns the written paths.

    Args:
        weights: str or Path of a ``best.keras`` written by unet_tf.
        out: str or Path, the output folder (created; same-named entries replaced).
        formats: names from :data:`unet_tf.config.EXPORT_FORMAT_NAMES` (or one comma-separated str).
            Default all three.
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


def _write_all(bare, info: ModelInfo, staging: Path, formats: Sequence[str], log: Log) -> list[str]:
    """Write the requested formats into ``staging``; return the top-level names to publish."""
    work = staging / "work"
    work.mkdir()
    divisor = info.size_divisor
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
        from unet_tf.export.bioimageio import write_package

        write_package(bare, info, staging / "bioimageio", onnx_path, sm_path, checks, log)
        names += ["bioimageio", "bioimageio.zip"]
    shutil.rmtree(work)
    for name in names:
        log(f"wrote {name}")
    return names
