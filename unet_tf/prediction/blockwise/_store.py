"""Where blocks are read and written: the lazy input, the output arrays, the per-block files and markers.

Layout of an output folder ``out``: the output arrays (``mask`` (H, W),
``instances`` (H, W) uint32, ``probabilities`` (K, H, W) float32, chunked
``(block_size, block_size)`` so no two blocks write one chunk) and a private
``out/.unet_tf/`` folder: ``identity.json`` (which image, model and settings
the folder is for), ``limits.json`` (the normalization limits of the first
run), ``provisional`` (each block's instance ids 1..n before the merge), and
``blocks/<i>_<j>.npz`` (a block's ring of labels and counts) followed by
``blocks/<i>_<j>.done``, the completion marker, written atomically AFTER the
block's data: a killed task leaves no marker, and a rerun with ``resume``
redoes exactly the blocks without one.

Until :mod:`unet_tf.io.zarr` exists this writes plain zarr arrays (no OME
metadata, no pyramid) and reads zarr arrays and ``.npy`` files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from unet_tf.errors import UserInputError

PRIVATE = ".unet_tf"


def open_input(path: str | Path) -> Any:
    """The 2-D image at ``path`` as a lazy array-like (numpy slicing reads only the window)."""
    path = Path(path)
    if path.suffix == ".npy":
        array = np.load(path, mmap_mode="r")
    else:
        import zarr

        try:
            array = zarr.open_array(str(path), mode="r")
        except Exception as exc:  # zarr raises several types for a missing or foreign folder
            raise UserInputError(f"{path}: cannot open as a zarr array ({type(exc).__name__})") from None
    if array.ndim != 2:
        raise UserInputError(f"{path}: expected a 2-D image, found shape {tuple(array.shape)}")
    return array


def private(out: str | Path, *parts: str) -> Path:
    return Path(out, PRIVATE, *parts)


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def check_identity(out: Path, identity: dict, resume: bool) -> None:
    """UserInputError unless ``out`` is new, or (with ``resume``) was started for the same ``identity``."""
    if not out.exists() or not any(out.iterdir()):
        return
    path = private(out, "identity.json")
    found = json.loads(path.read_text()) if path.exists() else None
    if not resume:
        what = f"from {found.get('input')}" if found else "and is not a blockwise output"
        raise UserInputError(f"{out}: exists {what}; choose another `out`, or set `resume` to continue it")
    if found != json.loads(json.dumps(identity, sort_keys=True)):  # as written: tuples become lists
        theirs = found.get("input") if found else "another program"
        raise UserInputError(f"{out}: was started for {theirs} with other settings; `resume` cannot continue it")


def create_output(out: Path, shape, *, mask_dtype, n_probabilities: int, instances: bool, chunk: int) -> None:
    """Create the arrays of an output folder (kept when they exist: a resumed run)."""
    import zarr

    chunks = (chunk, chunk)
    kinds = {"mask": (shape, mask_dtype, chunks)}
    if instances:
        kinds["instances"] = (shape, np.uint32, chunks)
        kinds[f"{PRIVATE}/provisional"] = (shape, np.uint32, chunks)
    if n_probabilities:
        kinds["probabilities"] = ((n_probabilities, *shape), np.float32, (1, *chunks))
    root = zarr.open_group(str(out), mode="a")
    for name, (size, dtype, chunking) in kinds.items():
        if name not in root:
            root.create_array(name, shape=size, dtype=dtype, chunks=chunking, fill_value=0)


def open_output(out: str | Path) -> Any:
    """The output group (arrays by name: ``mask``, ``instances``, ``probabilities``, ``.unet_tf/provisional``)."""
    import zarr

    return zarr.open_group(str(out), mode="r+")


def marker(out: str | Path, name: str) -> Path:
    return private(out, "blocks", f"{name}.done")


def save_block(out: str | Path, name: str, **arrays: np.ndarray) -> None:
    """The block's npz, then its completion marker; each written to a temporary name and renamed."""
    path = private(out, "blocks", f"{name}.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    done = marker(out, name)
    tmp = done.with_name(f".{name}.{os.getpid()}.tmp")
    tmp.write_text("done\n")
    os.replace(tmp, done)


def load_block(out: str | Path, name: str) -> dict[str, np.ndarray]:
    with np.load(private(out, "blocks", f"{name}.npz")) as data:
        return {key: data[key] for key in data.files}
