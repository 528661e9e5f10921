"""Pretrained models shipped inside the package, found by name (``nuclei``) wherever a model file is accepted.

A bundled model is two files in the package folder ``unet_tf/models/bundled/``
(:data:`DEFAULT_ROOT`): ``<name>.keras``, a model file like any ``best.keras``,
and ``<name>.md``, its model card, whose first line is a one-line summary.
The name is the file stem, case-sensitive. A card without its model file, or a
model file without its card, is ignored with a note; ``README.md`` describes
the folder and is no card.

:func:`resolve_weights` is the one resolver: every entry point that takes a
model file (:func:`unet_tf.models.file.load_model`, ``train.init_from``, the
export, the web app's model list) passes what the user gave through it. No
TensorFlow is imported here.
"""

from __future__ import annotations

from pathlib import Path

from unet_tf.errors import UserInputError, say_note

DEFAULT_ROOT = Path(__file__).with_suffix("")  # unet_tf/models/bundled/, package data
MODEL_SUFFIX = ".keras"
CARD_SUFFIX = ".md"
FOLDER_README = "README"  # README.md says what goes in the folder; not a model card


def _root(root: str | Path | None) -> Path:
    return DEFAULT_ROOT if root is None else Path(root)


def card_summary(card: str | Path) -> str:
    """The one-line summary of a model card: its first non-blank line, without Markdown heading marks."""
    for line in Path(card).read_text(encoding="utf-8").splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


def bundled_files(root: str | Path | None = None) -> dict[str, Path]:
    """name -> ``<name>.keras`` of each complete bundled model (model file and card) under ``root``, by name.

    Args:
        root: str, Path or None. The folder of bundled models; None:
            :data:`DEFAULT_ROOT`, the package's own. A missing folder holds none.
    """
    folder = _root(root)
    if not folder.is_dir():
        return {}
    models = {p.stem: p for p in folder.iterdir() if p.suffix == MODEL_SUFFIX and p.is_file()}
    cards = {p.stem for p in folder.iterdir() if p.suffix == CARD_SUFFIX and p.is_file() and p.stem != FOLDER_README}
    for name in sorted(cards - models.keys()):
        say_note("a bundled model card without its model file is ignored", folder / f"{name}{CARD_SUFFIX}")
    for name in sorted(models.keys() - cards):
        say_note("a bundled model file without its model card (.md) is ignored", models[name])
    return {name: models[name] for name in sorted(models.keys() & cards)}


def bundled_models(root: str | Path | None = None) -> dict[str, str]:
    """name -> one-line summary (the first line of its model card) of each bundled model, by name.

    Args:
        root: str, Path or None. The folder of bundled models; None:
            :data:`DEFAULT_ROOT`, the package's own.

    Example:
        >>> from unet_tf.models.bundled import bundled_models
        >>> bundled_models("/nonexistent")
        {}
    """
    return {name: card_summary(path.with_suffix(CARD_SUFFIX)) for name, path in bundled_files(root).items()}


def resolve_weights(name_or_path: str | Path, root: str | Path | None = None, parameter: str = "model_file") -> Path:
    """The model file meant by ``name_or_path``: an existing file wins, else the bundled model of that name.

    Args:
        name_or_path: str or Path. A ``.keras`` file, or the name of a bundled
            model (:func:`bundled_models`), e.g. ``nuclei``.
        root: str, Path or None. The folder of bundled models; None:
            :data:`DEFAULT_ROOT`.
        parameter: str. The parameter the value came from, named in the error
            (`model_file`, `train.init_from`, `weights`).

    Returns:
        Path of the model file (not loaded, not checked further).

    Neither an existing file nor a bundled name is a :class:`UserInputError`
    that names the value and lists the bundled names (or says none are installed).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    files = bundled_files(root)
    if str(name_or_path) in files:
        return files[str(name_or_path)]
    known = f"bundled models: {', '.join(files)}" if files else "no bundled models are installed"
    raise UserInputError(
        f"`{parameter}` {name_or_path}: no such weights file, and no bundled model of that name ({known})"
    )


def describe_bundled(root: str | Path | None = None) -> list[str]:
    """Lines listing the bundled models, ``name: summary`` each, or one line saying that none are installed."""
    models = bundled_models(root)
    if not models:
        return [f"no bundled models are installed (a model is <name>.keras and its card <name>.md in {_root(root)})"]
    width = max(len(name) for name in models)
    return [f"{name.ljust(width)}  {summary}" for name, summary in models.items()]


__all__ = ["DEFAULT_ROOT", "bundled_files", "bundled_models", "card_summary", "describe_bundled", "resolve_weights"]
