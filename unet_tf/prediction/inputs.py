"""What to segment: files, folders and globs -> samples (image + optional labels), output names, shards.

Several machines (or processes) can share the images of one run:
:func:`shard_samples` gives worker ``i`` of ``n`` every ``n``-th image, and
:func:`shard_suffix` names its tables ``metrics.shard-i-of-n.csv`` (and so on)
so that all workers can write into the same folder.
"""

from __future__ import annotations

import glob
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from unet_tf.data.layouts import Sample, ctc_markers, list_samples, mask_key
from unet_tf.errors import UserInputError
from unet_tf.io.images import is_image_file
from unet_tf.models.file import ModelInfo


def natural_key(path: str | Path) -> tuple[tuple[str | int, ...], str]:
    """Sort key that compares digit runs as integers: ``frame_2`` before ``frame_10``.

    Text runs compare as strings, digit runs as numbers; the path itself breaks
    ties (``frame_01`` vs ``frame_1``), so the order is total and the same on
    every machine.
    """
    text = str(path)
    parts = re.split(r"(\d+)", text)  # text, digits, text, ...: digit runs at the odd places
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text


def shard_suffix(index: int, count: int) -> str:
    """``""`` for one shard, else ``.shard-<index>-of-<count>`` (before the ``.csv`` of each table)."""
    return "" if count == 1 else f".shard-{index}-of-{count}"


def shard_samples(samples: Sequence[Sample], index: int, count: int) -> list[Sample]:
    """Worker ``index`` (0-based) of ``count``: every ``count``-th sample, in natural order of image path.

    The ``count`` shards are disjoint and together hold every sample once,
    whatever order each worker listed its inputs in; their sizes differ by at
    most one.
    """
    if count < 1 or not 0 <= index < count:
        raise UserInputError(f"`predict.shard` {index}/{count}: need 0 <= i < n, e.g. 0/2 and 1/2")
    ordered = sorted(samples, key=lambda s: natural_key(s.image))
    return ordered[index::count]


def check_output_names(samples: Sequence[Sample]) -> None:
    """Outputs are named after image stems: two images with one stem (or a reserved row name) are an error."""
    stems: dict[str, Path] = {}
    for sample in samples:
        if sample.image.stem in stems or sample.image.stem in ("mean", "all"):
            other = stems.get(sample.image.stem, "a reserved table row name")
            raise UserInputError(f"{sample.image}: same output name '{sample.image.stem}' as {other}; rename one")
        stems[sample.image.stem] = sample.image


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files, folders (their image files) and globs -> unique image paths.

    A folder's files and a glob's matches come in natural order (:func:`natural_key`:
    ``frame_2`` before ``frame_10``); the items keep the order they were given in.
    """
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                (q for q in p.iterdir() if q.is_file() and is_image_file(q) and not q.name.startswith(".")),
                key=natural_key,
            )
            if not found:
                raise UserInputError(f"{p}: folder holds no image files")
            paths += found
        elif p.is_file():
            paths.append(p)
        elif any(ch in item for ch in "*?["):
            found = sorted((Path(q) for q in glob.glob(item) if Path(q).is_file()), key=natural_key)
            if not found:
                raise UserInputError(f"{item}: no files match this pattern")
            paths += found
        else:
            raise UserInputError(f"{p}: no such file or folder")
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise UserInputError("no input images given")
    return unique


def default_inputs(info: ModelInfo) -> list[Sample]:
    """The held-out images of training (``data.holdout``), else the dataset's test split."""
    if info.test_images:
        samples = [Sample(Path(image), tuple(Path(p) for p in labels)) for image, *labels in info.test_images]
        if info.dataset == "ctc":  # the TRA markers tell the unannotated nuclei of a partial frame
            samples = [replace(s, markers=ctc_markers(s.labels[0])) if s.labels else s for s in samples]
        return samples
    if not info.data_dir:
        raise UserInputError("this model does not record its dataset folder: give `inputs`")
    try:
        return list_samples(info.dataset, info.data_dir, "test")
    except UserInputError as exc:
        raise UserInputError(f"no default input ({exc}); give `inputs`") from None


def find_label(image: Path, labels_dir: Path) -> Path | None:
    """The ground-truth file for ``image`` in ``labels_dir``: same stem, a mask suffix, or label_ for raw_."""
    stem = image.stem
    keys = {stem}
    if stem.startswith("raw_"):
        keys.add("label_" + stem[4:])
    for candidate in sorted(labels_dir.iterdir()):
        if candidate.is_file() and is_image_file(candidate) and candidate != image:
            if candidate.stem in keys or mask_key(candidate.stem) == stem:
                return candidate
    return None


def samples_for(inputs: Sequence[str] | None, labels_dir: str | None, info: ModelInfo) -> list[Sample]:
    """Samples to segment: ``inputs`` paths (labels from ``labels_dir``) or the dataset's test split."""
    if inputs:
        paths = expand_inputs(inputs)
        samples = [Sample(p) for p in paths]
    else:
        samples = default_inputs(info)
    if labels_dir:
        folder = Path(labels_dir)
        if not folder.is_dir():
            raise UserInputError(f"{folder}: no such labels folder")
        samples = [Sample(s.image, (lab,) if (lab := find_label(s.image, folder)) else ()) for s in samples]
        missing = [s.image.name for s in samples if not s.labels]
        if missing:
            print(
                f"note: no label in {folder} for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                file=sys.stderr,
            )
    return samples
