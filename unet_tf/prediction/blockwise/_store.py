"""Where blocks are read and written: the lazy input, the output arrays, the per-block files and markers.

The output folder ``out`` is an OME-Zarr of :mod:`unet_tf.io.zarr` (image
copy, ``labels/mask``, ``labels/instances``, ``probabilities``; level 0 chunked
``(block_size, block_size)`` so no two blocks write one chunk; it checks which
image and settings an existing folder holds). Beside its arrays a private
``out/.unet_tf/`` folder holds ``limits.json`` (the normalization limits of
the first run), ``provisional`` (each block's instance ids 1..n before the
merge), and
``blocks/<i>_<j>.npz`` (a block's ring of labels and counts) followed by
``blocks/<i>_<j>.done``, the completion marker, written atomically AFTER the
block's data: a killed task leaves no marker, and a rerun with ``resume``
redoes exactly the blocks without one. ``results/`` holds a measuring task's
result until the client reads it (:func:`spilled`).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unet_tf.io.writers import atomic_path

PRIVATE = ".unet_tf"


def private(out: str | Path, *parts: str) -> Path:
    return Path(out, PRIVATE, *parts)


def write_json_atomic(path: Path, value: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True))


def provisional(out: str | Path, shape: tuple[int, int] | None = None, chunk: int | None = None):
    """The zarr array of provisional instance ids (uint32, 1..n per block); created when ``shape`` is given."""
    import zarr

    path = str(private(out, "provisional"))
    if shape is None:
        return zarr.open_array(path, mode="r+")
    return zarr.open_array(path, mode="a", shape=shape, dtype=np.uint32, chunks=(chunk, chunk), fill_value=0)


def marker(out: str | Path, name: str) -> Path:
    return private(out, "blocks", f"{name}.done")


def save_block(out: str | Path, name: str, **arrays: np.ndarray) -> None:
    """The block's npz, then its completion marker; each written to a temporary name and renamed."""
    with atomic_path(private(out, "blocks", f"{name}.npz")) as tmp:
        np.savez_compressed(tmp, **arrays)
    with atomic_path(marker(out, name)) as tmp:
        tmp.write_text("done\n")


def load_block(out: str | Path, name: str) -> dict[str, np.ndarray]:
    with np.load(private(out, "blocks", f"{name}.npz")) as data:
        return {key: data[key] for key in data.files}


def spilled(fn: Callable, out: str, name: str, *args: Any) -> str:
    """Run ``fn(*args)`` on a worker and write its result to ``results/<name>.pkl`` (atomically); the path.

    The worker then keeps no result in memory until the client gathers every task (a worker's share of the
    object table would otherwise grow with the blocks it measured); :func:`unspill` reads it back."""
    path, result = private(out, "results", f"{name}.pkl"), fn(*args)
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return str(path)


def unspill(path: str) -> Any:
    """The result :func:`spilled` wrote (read once: the file is removed)."""
    with open(path, "rb") as f:
        value = pickle.load(f)
    os.remove(path)
    return value
