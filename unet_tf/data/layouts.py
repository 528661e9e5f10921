"""Named dataset layouts -> samples (image + label files) and their classes (:class:`DatasetSpec`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from unet_tf.config import DATASET_NAMES
from unet_tf.errors import UserInputError
from unet_tf.io.images import is_image_file, page_count, read_label
from unet_tf.synthetic import TEM_CLASS_NAMES, TEM_CLASS_VALUES

ORDERED_LAYOUTS = ("ctc", "isbi2012")
"""Layouts whose images are sequences (time-lapse frames, serial sections): validated on contiguous blocks."""

_MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt", "-mask", "-label")


@dataclass(frozen=True)
class Sample:
    """One image and the label file(s) that annotate it (none for unlabelled images).

    ``page``: the 0-based page of a multi-page TIFF stack (image and labels
    alike); None for a single-page file.
    """

    image: Path
    labels: tuple[Path, ...] = ()
    page: int | None = None
    markers: Path | None = None  # ctc: the TRA marker image (every nucleus has a marker)

    @property
    def name(self) -> str:
        return self.image.stem


@dataclass(frozen=True, eq=False)
class ArraySample:
    """An image and its label image held in memory (``TrainingData.from_arrays``).

    ``image``: (H, W) raw pixel values; ``label``: (H, W) label values (as a
    label file would hold them), or None; ``markers``: (H, W) ctc TRA markers
    (every nucleus has one), or None; ``source``: the one-page image file the
    arrays were read from (resized, :mod:`unet_tf.data.rescale`), or None.
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None = None
    markers: np.ndarray | None = None
    source: Path | None = None

    @property
    def labels(self) -> tuple:
        return () if self.label is None else (f"{self.name} (label array)",)


@dataclass(frozen=True)
class DatasetSpec:
    """How label files of a layout become class ids.

    ``class_values[i]`` is the label value written for class i. ``label_mode``:
    ``values`` maps declared values to ids (others are an error); ``instances``
    merges every id > 0 into class 1; ``union`` merges several binary masks.
    """

    name: str
    class_values: tuple[int, ...]
    class_names: tuple[str, ...]
    label_mode: str = "values"
    target: str = "semantic"  # "instances": label files hold object ids, classes are bg/interior/boundary
    boundary_width: int = 2
    ignore_value: int | None = None  # label value of pixels that count nowhere (read as IGNORE_ID)
    ignore_margin: float | None = None  # ctc: growth (px) of unannotated markers, one for the data set

    @property
    def n_classes(self) -> int:
        return len(self.class_values)


def default_data_root() -> Path:
    """``$UNET_TF_DATA``, else ``data/`` of the source checkout (or of the cwd)."""
    env = os.environ.get("UNET_TF_DATA")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "setup.cfg").is_file():
        return checkout / "data"
    return Path.cwd() / "data"


def default_data_dir(name: str) -> Path:
    return default_data_root() / name


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith("."))


def _require(samples: list[Sample], where: Path, what: str) -> list[Sample]:
    if not samples:
        raise UserInputError(f"{where}: no {what} found")
    return samples


def _tem(root: Path, split: str) -> list[Sample]:
    folder = root / split
    files = _images_in(folder)
    pattern = re.compile(r"^(raw|label|inst)_(.+)$")
    raw, label, inst, other = {}, {}, {}, []  # inst_XX.tif: object ids of the synthetic set
    for path in files:
        match = pattern.match(path.stem)
        if match is None:
            other.append(path)
        else:
            {"raw": raw, "label": label, "inst": inst}[match[1]][match[2]] = path
    if split == "train":
        if other:
            raise UserInputError(f"{other[0]}: expected raw_XX.tif, label_XX.tif or inst_XX.tif in a tem train folder")
        unpaired = sorted(set(raw) ^ set(label))
        if unpaired:
            key = unpaired[0]
            path = raw.get(key) or label.get(key)
            partner = "label" if key in raw else "raw"
            raise UserInputError(f"{path}: has no matching {partner}_{key} file")
        return _require([Sample(raw[k], (label[k],)) for k in sorted(raw)], folder, "raw_XX/label_XX pairs")
    samples = [Sample(raw[k], (label[k],) if k in label else ()) for k in sorted(raw)]
    samples += [Sample(p) for p in other]
    return _require(samples, folder, "test images")


def _isbi2012(root: Path, split: str) -> list[Sample]:
    images = _images_in(root / split / "image")
    label_dir = root / split / "label"
    if split == "train":
        labels = {p.stem: p for p in _images_in(label_dir)}
        missing = [p for p in images if p.stem not in labels]
        if missing:
            raise UserInputError(f"{missing[0]}: has no label {label_dir / missing[0].name}")
        extra = sorted(set(labels) - {p.stem for p in images})
        if extra:
            raise UserInputError(f"{labels[extra[0]]}: has no matching image")
        return _require([Sample(p, (labels[p.stem],)) for p in images], root / split / "image", "images")
    return _require([Sample(p) for p in images], root / split / "image", "images")


def mask_key(stem: str) -> str:
    for suffix in _MASK_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _folder(root: Path, split: str) -> list[Sample]:
    base = root / split if (root / split / "images").is_dir() else root
    images = _images_in(base / "images")
    masks_dir = base / "masks"
    if not masks_dir.is_dir():
        if split == "train":
            raise UserInputError(f"{masks_dir}: no such folder (folder layout: images/ + masks/)")
        return _require([Sample(p) for p in images], base / "images", "images")
    masks = {}
    for path in _images_in(masks_dir):
        key = mask_key(path.stem)
        if key in masks:
            raise UserInputError(f"{path}: second mask for image '{key}' (also {masks[key]})")
        masks[key] = path
    missing = [p for p in images if p.stem not in masks]
    if missing and split == "train":
        raise UserInputError(f"{missing[0]}: has no mask in {masks_dir}")
    extra = sorted(set(masks) - {p.stem for p in images})
    if extra:
        raise UserInputError(f"{masks[extra[0]]}: has no matching image in {base / 'images'}")
    samples = [Sample(p, (masks[p.stem],) if p.stem in masks else ()) for p in images]
    return _require(samples, base / "images", "images")


def ctc_markers(seg: Path) -> Path:
    """The TRA marker file of a CTC SEG file: ``NN_GT/SEG/man_segT.tif`` -> ``NN_GT/TRA/man_trackT.tif``."""
    return seg.parent.parent / "TRA" / seg.name.replace("man_seg", "man_track")


def _ctc(root: Path, split: str) -> list[Sample]:
    if split != "train":
        raise UserInputError(f"{root}: the ctc layout has no test split; give images in `inputs`")
    sequences = (
        sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)) if root.is_dir() else []
    )
    samples = []
    for seq in sequences:
        seg_dir = root / f"{seq.name}_GT" / "SEG"
        if not seg_dir.is_dir():
            continue
        frames = {int(m[1]): p for p in _images_in(seq) if (m := re.fullmatch(r"t(\d+)", p.stem))}
        for seg in _images_in(seg_dir):
            match = re.fullmatch(r"man_seg(\d+)", seg.stem)
            if match is None:
                continue
            frame = frames.get(int(match[1]))
            if frame is None:
                raise UserInputError(f"{seg}: no frame t{match[1]}.tif in {seq}")
            marker = ctc_markers(seg)
            if not marker.is_file():
                raise UserInputError(
                    f"{seg}: no TRA marker file {marker}: without markers the unannotated nuclei "
                    "of a partial SEG frame cannot be told from background"
                )
            samples.append(Sample(frame, (seg,), markers=marker))
    return _require(samples, root, "annotated frames (NN/tNNN.tif with NN_GT/SEG/man_segNNN.tif)")


def _dsb2018(root: Path, split: str) -> list[Sample]:
    if not root.is_dir():
        raise UserInputError(f"{root}: no such folder")
    samples = []
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        image = case / "images" / f"{case.name}.png"
        if not image.is_file():
            raise UserInputError(f"{case}: missing images/{case.name}.png")
        masks = tuple(_images_in(case / "masks")) if (case / "masks").is_dir() else ()
        if split == "train" and not masks:
            continue
        if split == "test" and masks:
            continue
        samples.append(Sample(image, masks))
    return _require(
        samples, root, f"{split} cases (ID/images/ID.png" + (" with ID/masks/*.png)" if split == "train" else ")")
    )


_LAYOUTS = {"tem": _tem, "isbi2012": _isbi2012, "folder": _folder, "ctc": _ctc, "dsb2018": _dsb2018}


def list_samples(name: str, data_dir: str | Path, split: str = "train") -> list[Sample]:
    """Image/label pairs of dataset layout ``name`` under ``data_dir``, sorted by name."""
    if name not in _LAYOUTS:
        raise UserInputError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "isbi2012" and (Path(data_dir) / "train-volume.tif").is_file():
        return expand_pages(_isbi2012_volumes(Path(data_dir), split))
    return expand_pages(_LAYOUTS[name](Path(data_dir), split))


def expand_pages(samples: Sequence[Sample]) -> list[Sample]:
    """Each page of a multi-page TIFF becomes a sample of its own; its label stacks must have as many pages."""
    out: list[Sample] = []
    for sample in samples:
        pages = page_count(sample.image) if sample.image.suffix.lower() in (".tif", ".tiff") else 1
        if pages == 1:
            out.append(sample)
            continue
        for path in (*sample.labels, *((sample.markers,) if sample.markers else ())):
            if page_count(path) != pages:
                raise UserInputError(
                    f"{path}: {page_count(path)} page(s), but the image stack {sample.image.name} has {pages}"
                )
        out += [replace(sample, page=k) for k in range(pages)]
    return out


def _isbi2012_volumes(root: Path, split: str) -> list[Sample]:
    """The challenge's original files: ``train-volume.tif`` + ``train-labels.tif``, ``test-volume.tif``."""
    if split == "train":
        labels = root / "train-labels.tif"
        if not labels.is_file():
            raise UserInputError(f"{root / 'train-volume.tif'}: has no {labels.name} beside it")
        return [Sample(root / "train-volume.tif", (labels,))]
    test = root / "test-volume.tif"
    return [Sample(test)] if test.is_file() else _require([], root, "test-volume.tif")


def dataset_spec(
    name: str,
    class_values: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    samples: Sequence[Sample] = (),
    ignore_value: int | None = None,
) -> DatasetSpec:
    """Classes of a layout; for ``folder`` without ``class_values`` they are read from the masks
    (without ``ignore_value``)."""
    if name == "tem":
        spec = DatasetSpec(name, TEM_CLASS_VALUES, TEM_CLASS_NAMES)
    elif name == "isbi2012":
        spec = DatasetSpec(name, (255, 0), ("cell_interior", "membrane"))
    elif name == "ctc":
        spec = DatasetSpec(name, (0, 255), ("background", "cell"), "instances")
    elif name == "dsb2018":
        spec = DatasetSpec(name, (0, 255), ("background", "nucleus"), "union")
    elif name == "folder":
        values = tuple(class_values) if class_values else _values_in_masks(samples, ignore_value)
        spec = DatasetSpec(name, values, tuple(f"class_{v}" for v in values))
    else:
        raise UserInputError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_NAMES)}")
    if class_values and name != "folder":
        spec = DatasetSpec(name, tuple(int(v) for v in class_values), spec.class_names, spec.label_mode)
    if class_names:
        if len(class_names) != spec.n_classes:
            raise UserInputError(
                f"`data.class_names`: {len(class_names)} names for {spec.n_classes} class values "
                f"{list(spec.class_values)}"
            )
        spec = DatasetSpec(spec.name, spec.class_values, tuple(class_names), spec.label_mode)
    if len(spec.class_names) != spec.n_classes:
        spec = DatasetSpec(
            spec.name, spec.class_values, tuple(f"class_{v}" for v in spec.class_values), spec.label_mode
        )
    if spec.n_classes < 2:
        raise UserInputError(f"{name}: need at least 2 classes, got values {list(spec.class_values)}")
    if len(set(spec.class_values)) != spec.n_classes:
        raise UserInputError(f"`data.class_values`: repeated values in {list(spec.class_values)}")
    return spec


INSTANCE_CLASS_VALUES = (0, 1, 2)  # the 3-class target: background, interior, boundary
INSTANCE_CLASS_NAMES = ("background", "interior", "boundary")


def resolve_target(name: str, target: str = "auto", instance_masks: bool = False) -> str:
    """``semantic`` or ``instances`` for dataset layout ``name`` (``auto``: what its labels support)."""
    supports = name in ("ctc", "dsb2018") or (name == "folder" and instance_masks)
    if target == "auto":
        return "instances" if supports else "semantic"
    if target == "instances" and not supports:
        hint = " (set `data.instance_masks` if each mask holds one id per object)" if name == "folder" else ""
        raise UserInputError(f"`data.target` instances: the {name} layout has no instance labels{hint}")
    if target not in ("semantic", "instances"):
        raise UserInputError(f"`data.target` {target}: choose auto, semantic or instances")
    return target


def instance_spec(spec: DatasetSpec, boundary_width: int = 2) -> DatasetSpec:
    """The classes an instance model learns for dataset ``spec`` (its label files hold object ids)."""
    if boundary_width < 1:
        raise UserInputError(f"`data.boundary_width` {boundary_width}: must be at least 1 px")
    mode = "union" if spec.label_mode == "union" else "instances"
    return replace(
        spec,
        class_values=INSTANCE_CLASS_VALUES,
        class_names=INSTANCE_CLASS_NAMES,
        label_mode=mode,
        target="instances",
        boundary_width=boundary_width,
    )


def with_ignore_value(spec: DatasetSpec, value: int | None) -> DatasetSpec:
    """``spec`` whose label value ``value`` marks pixels to ignore (it must not be a class value)."""
    if value is None:
        return spec
    if value in spec.class_values:
        name = spec.class_names[spec.class_values.index(value)]
        raise UserInputError(f"`data.ignore_value` {value}: is also the value of class '{name}'")
    return replace(spec, ignore_value=value)


def _values_in_masks(samples: Sequence[Sample], ignore_value: int | None = None) -> tuple[int, ...]:
    values: set[int] = set()
    for sample in samples:
        for path in sample.labels:
            values.update(int(v) for v in np.unique(read_label(path)))
    values.discard(ignore_value)
    if len(values) > 32:
        raise UserInputError(
            f"{samples[0].labels[0].parent}: masks hold {len(values)} different values; "
            "these look like instance labels: give `data.class_values`, or set `data.instance_masks`"
        )
    return tuple(sorted(values))
