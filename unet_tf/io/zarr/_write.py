"""The OME-Zarr prediction output: created once, written chunk by chunk by workers, finished with a pyramid."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.io.zarr._ngff import (
    ZARR_FORMAT,
    level_shapes,
    new_array,
    write_label_metadata,
    write_multiscale,
    write_pyramid,
)

RECORD_KEY = "unet_tf"  # root attribute: what made this folder (identity, layout, finished)
IMAGE, MASK, INSTANCES, PROBABILITIES = "", "labels/mask", "labels/instances", "probabilities"


@dataclasses.dataclass
class OutputZarr:
    """An OME-Zarr output folder and its level-0 zarr arrays.

    Attributes:
        path: Path, the folder.
        image: (H, W) zarr array, a copy of the input image.
        mask: (H, W) zarr array of class values (as ``_mask.tif``).
        instances: (H, W) zarr array of instance ids, or None.
        probabilities: (C, H, W) float32 zarr array, one channel per output class, or None.
        pixel_size_um: float | None; chunk: int, the y/x chunk side asked for (clipped to the image).
    """

    path: Path
    image: Any
    mask: Any
    instances: Any | None
    probabilities: Any | None
    pixel_size_um: float | None
    chunk: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.mask.shape)


def _as_json(value) -> Any:
    """``value`` as it reads back from JSON (tuples -> lists, paths and dtypes -> str), to compare like with like."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _layout(shape, image_dtype, mask_dtype, instance_dtype, n_probabilities, chunk, pixel_size_um) -> dict:
    dtype = lambda d: None if d is None else np.dtype(d).name  # noqa: E731
    return {
        "shape": [int(n) for n in shape],
        "image_dtype": dtype(image_dtype),
        "mask_dtype": dtype(mask_dtype),
        "instance_dtype": dtype(instance_dtype),
        "n_probabilities": int(n_probabilities),
        "chunk": int(chunk),
        "pixel_size_um": None if pixel_size_um is None else float(pixel_size_um),
    }


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _stored_record(out: Path) -> dict | None:
    """The record of an output folder we wrote, or None when ``out`` is something else."""
    import zarr

    try:
        record = zarr.open_group(out, mode="r").attrs.get(RECORD_KEY)
    except Exception:  # not a zarr group at all
        return None
    return record if isinstance(record, dict) and "identity" in record else None


def _differences(stored: dict, wanted: dict) -> list[str]:
    found = []
    for part in ("identity", "layout"):
        old, new = stored.get(part, {}), wanted[part]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                found.append(f"{key} {old.get(key)!r} there, {new.get(key)!r} here")
    return found


def _check_existing(out: Path, wanted: dict, resume: bool) -> None:
    stored = _stored_record(out)
    if stored is None:
        raise UserInputError(f"{out}: exists and is not an output folder of unet_tf; choose another `out`")
    differs = _differences(stored, wanted)
    if differs:
        raise UserInputError(
            f"{out}: holds the output of another image or settings ({'; '.join(differs)}); "
            "choose another `out` or remove it"
        )
    if not resume:
        raise UserInputError(f"{out}: exists with the output of this image and settings; `resume` continues it")


def create_output(
    out_path: str | Path,
    shape: tuple[int, int],
    *,
    image_dtype,
    mask_dtype,
    instance_dtype=None,
    n_probabilities: int = 0,
    chunk: int = 1024,
    pixel_size_um: float | None = None,
    identity: dict,
    resume: bool = False,
    image_name: str | None = None,
    class_names: dict[int, str] | None = None,
) -> OutputZarr:
    """Create (or, with ``resume``, reopen) the OME-Zarr output folder of one image.

    Args:
        out_path: the folder (``*.ome.zarr``); created, or an empty folder used.
        shape: (H, W) of the image.
        image_dtype, mask_dtype: dtypes of the image copy and of the class mask.
        instance_dtype: dtype of ``labels/instances``; None: no instances.
        n_probabilities: int, channels of the ``probabilities`` image (float32); 0: none.
        chunk: int, the y/x chunk side of level 0 (clipped to the image); blocks should be multiples of it.
        pixel_size_um: float | None, stored in every level's ``scale`` (micrometer).
        identity: JSON-able dict saying what the output is of (input, model, tile, threshold...),
            stored under the root attribute "unet_tf" and compared when the folder exists.
        resume: bool, reopen an existing output of the same identity and layout instead of refusing it.
        image_name: the name viewers show for the image (default: the folder name).
        class_names: {class value: name} stored as properties of ``labels/mask``.

    Returns:
        OutputZarr with the level-0 arrays; the metadata already names level 0, so a viewer opens the
        folder while it is being written. :func:`finish_output` adds the pyramid.

    Raises UserInputError when the folder exists but is not ours, holds another identity or layout,
    or holds this one and ``resume`` is False. Nothing is ever deleted.
    """
    out = Path(out_path)
    wanted = {
        "identity": _as_json(identity),
        "layout": _layout(shape, image_dtype, mask_dtype, instance_dtype, n_probabilities, chunk, pixel_size_um),
    }
    if out.exists() and not _is_empty_folder(out):
        _check_existing(out, wanted, resume)
    _build(out, wanted, image_name or out.name.split(".")[0], class_names)
    return open_output(out)


def _root(out: Path):
    import zarr

    try:
        return zarr.open_group(out, mode="a", zarr_format=ZARR_FORMAT)
    except OSError as exc:
        raise UserInputError(f"{out}: cannot write here ({exc.strerror or exc})") from None


def _build(out: Path, wanted: dict, name: str, class_names: dict[int, str] | None) -> None:
    """Record first, then every missing array and its metadata: a crash leaves a folder ``resume`` completes."""
    root = _root(out)
    if RECORD_KEY not in root.attrs:
        root.attrs[RECORD_KEY] = {**wanted, "finished": False}
    layout = wanted["layout"]
    shape, chunk, size = tuple(layout["shape"]), layout["chunk"], layout["pixel_size_um"]
    parts = [(IMAGE, shape, layout["image_dtype"]), (MASK, shape, layout["mask_dtype"])]
    if layout["instance_dtype"]:
        parts.append((INSTANCES, shape, layout["instance_dtype"]))
    if layout["n_probabilities"]:
        parts.append((PROBABILITIES, (layout["n_probabilities"], *shape), "float32"))
    for where, part_shape, dtype in parts:
        group = root.require_group(where) if where else root
        if "0" not in group:
            new_array(group, "0", part_shape, dtype, chunk)
        if "multiscales" not in group.attrs:
            title = {IMAGE: name, PROBABILITIES: f"{name} probabilities"}.get(where, where.split("/")[-1])
            _write_multiscale(group, 1, size, where, title)
    for where, _, _ in parts:
        if where.startswith("labels/"):
            properties = _class_properties(class_names) if where == MASK else None
            write_label_metadata(root["labels"], where.split("/")[-1], properties)


def _write_multiscale(group, n_levels: int, size: float | None, where: str, title: str) -> None:
    channel = where == PROBABILITIES
    write_multiscale(group, n_levels, size, channel=channel, labels=where.startswith("labels/"), name=title)


def _class_properties(class_names: dict[int, str] | None) -> list[dict] | None:
    if not class_names:
        return None
    return [{"label-value": int(value), "class": str(name)} for value, name in sorted(class_names.items())]


def open_output(out_path: str | Path) -> OutputZarr:
    """Reopen an output folder made by :func:`create_output` for writing (what a worker process does)."""
    import zarr

    out = Path(out_path)
    record = _stored_record(out) if out.exists() else None
    if record is None:
        raise UserInputError(f'{out}: not an output folder of unet_tf (no "{RECORD_KEY}" record)')
    root = zarr.open_group(out, mode="r+")
    layout = record["layout"]

    def level0(where: str):
        return root[f"{where}/0"] if where in root else None

    return OutputZarr(
        out, root["0"], level0(MASK), level0(INSTANCES), level0(PROBABILITIES), layout["pixel_size_um"], layout["chunk"]
    )


def finish_output(out: OutputZarr | str | Path, *, levels: int | None = None) -> OutputZarr:
    """Write the pyramid of every part (2x steps until the longest side <= 512, or ``levels`` in all) and its metadata.

    Image and probabilities: 2x2 means; labels: every other pixel (never averaged). Each level is read and
    written one chunk window at a time, so memory stays a few chunks whatever the image size. Level k's
    ``scale`` is the pixel size * 2**k. Marks the output finished in its record.
    """
    import zarr

    out = out if isinstance(out, OutputZarr) else open_output(out)
    root = zarr.open_group(out.path, mode="r+")
    shapes = level_shapes(out.shape, levels)
    for where in (IMAGE, MASK, INSTANCES, PROBABILITIES):
        if where and where not in root:
            continue
        group = root[where] if where else root
        labels = where.startswith("labels/")
        write_pyramid(group, shapes, labels=labels)
        title = _ngff_name(group)
        _write_multiscale(group, len(shapes), out.pixel_size_um, where, title)
    record = dict(root.attrs[RECORD_KEY])
    root.attrs[RECORD_KEY] = {**record, "finished": True, "levels": len(shapes)}
    return out


def _ngff_name(group) -> str:
    multiscales = group.attrs.get("multiscales") or [{}]
    return str(multiscales[0].get("name") or group.basename)


def write_ome_zarr(
    path: str | Path,
    image,
    *,
    pixel_size_um: float | None = None,
    chunk: int = 1024,
    levels: int | None = None,
    name: str | None = None,
) -> Path:
    """Write a 2-D image as an OME-Zarr multiscale image (NGFF 0.4), band of chunk rows by band.

    Args:
        path: the folder to create (``*.ome.zarr``); an existing non-empty one is refused.
        image: (H, W) array, or any 2-D array-like with slicing (``open_image(tif).array`` converts a
            huge TIFF without reading it whole).
        pixel_size_um: float | None, stored in the ``scale`` of every level (micrometer).
        chunk: int, y/x chunk side; levels: int | None, pyramid levels in all (default: down to <= 512 px).
        name: the image name viewers show (default: the folder name).

    Example:
        >>> write_ome_zarr("section.ome.zarr", np.zeros((2048, 2048), np.uint16), pixel_size_um=0.1)  # doctest: +SKIP
    """
    path = Path(path)
    if path.exists() and not _is_empty_folder(path):
        raise UserInputError(f"{path}: exists; choose another path for the OME-Zarr image")
    if len(image.shape) != 2:
        raise UserInputError(f"{path}: an OME-Zarr image is written from a 2-D (H, W) array, got shape {image.shape}")
    root = _root(path)
    level0 = new_array(root, "0", tuple(image.shape), image.dtype, chunk)
    rows = level0.chunks[0]
    for r0 in range(0, image.shape[0], rows):
        level0[r0 : r0 + rows] = np.asarray(image[r0 : r0 + rows])
    shapes = level_shapes(tuple(image.shape), levels)
    write_pyramid(root, shapes, labels=False)
    _write_multiscale(root, len(shapes), pixel_size_um, IMAGE, name or path.name.split(".")[0])
    return path
