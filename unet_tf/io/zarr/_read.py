"""Lazy 2-D images from OME-Zarr, plain zarr and TIFF: one slicing interface for the blockwise reader."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from unet_tf.errors import UserInputError, say_note
from unet_tf.io.images import TIFF_SUFFIXES, _to_gray
from unet_tf.io.metadata import pixel_size_um as tiff_pixel_size_um
from unet_tf.io.metadata import um_per_unit

ZARR_SUFFIXES = (".zarr",)  # ".ome.zarr" ends in ".zarr" too
_ZARR_FILES = (".zattrs", ".zgroup", ".zarray", "zarr.json")
_SPATIAL = ("y", "x")


def is_zarr(path: str | Path) -> bool:
    """True for a zarr store: a folder with zarr metadata (``.zgroup``, ``zarr.json``, ...) or a ``*.zarr`` name."""
    path = Path(path)
    if path.name.lower().endswith(ZARR_SUFFIXES):
        return True
    return path.is_dir() and any((path / name).is_file() for name in _ZARR_FILES)


@dataclasses.dataclass(frozen=True)
class Plane:
    """A 2-D (H, W) view of an N-D array: every axis but y and x held at index 0, colour reduced to gray.

    ``plane[r0:r1, c0:c1]`` reads only that window of ``source`` (any array with N-D numpy
    slicing: a zarr array) and returns a NumPy array (H', W') in the source dtype.
    """

    source: Any
    y_axis: int
    x_axis: int
    colour_axis: int | None = None  # a trailing samples axis (RGB TIFF), reduced per window
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.source.shape[self.y_axis]), int(self.source.shape[self.x_axis])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.source.dtype)

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            key = tuple(k for k in key if k is not Ellipsis)
        key = key + (slice(None),) * (2 - len(key))
        if len(key) != 2:
            raise IndexError(f"a 2-D image takes 2 indices, got {len(key)}")
        index: list = [0] * self.source.ndim
        index[self.y_axis], index[self.x_axis] = key
        if self.colour_axis is not None:
            index[self.colour_axis] = slice(None)
        window = np.asarray(self.source[tuple(index)])
        if self.colour_axis is None:
            return window
        kept = sorted((self.y_axis, self.x_axis, self.colour_axis))  # the axes a window keeps, in order
        return _to_gray(np.moveaxis(window, kept.index(self.colour_axis), -1), self.path)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        window = self[:, :]
        return window if dtype is None else window.astype(dtype)


@dataclasses.dataclass
class LazyImage:
    """One gray image opened lazily; ``array[r0:r1, c0:c1]`` reads only that window.

    Attributes:
        array: 2-D array-like (H, W) with ``shape``, ``dtype`` and NumPy slicing that returns an ``np.ndarray``.
        pixel_size_um: float | None, the pixel size in micrometres (x when anisotropic).
        path: Path, the file or store.
        kind: "ome-zarr", "zarr" or "tiff".
        chunks: (rows, cols) of the stored chunks / TIFF tiles or strips, for choosing block sizes.
        closer: what ``close`` closes (the TIFF file), or None.
    """

    array: Any
    pixel_size_um: float | None
    path: Path
    kind: str
    chunks: tuple[int, int]
    closer: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def close(self) -> None:
        if self.closer is not None:
            self.closer.close()
            self.closer = None

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_image(path: str | Path) -> LazyImage:
    """Open an OME-Zarr image, a plain zarr array or a TIFF for windowed reads of one gray plane.

    - OME-Zarr: level 0 of the first multiscale image; the pixel size from level 0's ``scale``
      on y/x (in micrometres; other length units converted). Singleton t/c/z axes are dropped;
      longer ones are refused (the models take one gray plane).
    - zarr without ``multiscales``: the array itself, or the one 2-D array of a group (said in a note).
    - TIFF / BigTIFF: tifffile's zarr view of series 0, level 0 (only the tiles or strips a window
      touches are read); a stack gives its first page (said); the pixel size from the file's metadata.

    Raises UserInputError naming the file when it is missing, not an image, or cannot be opened.

    Example:
        >>> with open_image("section.ome.zarr") as img:  # doctest: +SKIP
        ...     window = img.array[0:1024, 0:1024]
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder")
    if is_zarr(path):
        return _open_zarr(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path)
    raise UserInputError(f"{path}: not an image this reader opens lazily (expected OME-Zarr, zarr or TIFF)")


# === zarr ===


def _zarr_node(path: Path):
    import zarr

    try:
        return zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises many kinds (missing or bad metadata, unknown codec, ...)
        raise UserInputError(f"{path}: cannot be opened as zarr ({type(exc).__name__}: {exc})") from None


def ngff_attrs(node) -> dict:
    """The OME-NGFF attributes of a zarr node: under "ome" in NGFF 0.5 (zarr v3), top-level before."""
    attrs = dict(node.attrs)
    return dict(attrs["ome"]) if isinstance(attrs.get("ome"), dict) else attrs


def _open_zarr(path: Path) -> LazyImage:
    import zarr

    node = _zarr_node(path)
    if isinstance(node, zarr.Group):
        attrs = ngff_attrs(node)
        if "multiscales" not in attrs and "bioformats2raw.layout" in attrs and "0" in node:
            node, attrs = node["0"], ngff_attrs(node["0"])
        if attrs.get("multiscales"):
            return _open_multiscale(path, node, attrs["multiscales"][0])
        name, node = _only_array(path, node)
    else:
        name = path.name
    say_note("no multiscale metadata: read the array", f"{path} ({name})")
    plane = _squeezed(path, node, [f"dim_{i}" for i in range(node.ndim)])
    return LazyImage(plane, None, path, "zarr", _chunks2d(node, plane))


def _only_array(path: Path, group) -> tuple[str, Any]:
    arrays = sorted((name, a) for name, a in group.arrays() if sum(n > 1 for n in a.shape) <= 2 and a.ndim >= 2)
    if len(arrays) == 1:
        return arrays[0]
    if not arrays:
        raise UserInputError(f"{path}: a zarr group without multiscale metadata or a 2-D array; not an image")
    names = ", ".join(name for name, _ in arrays)
    raise UserInputError(
        f"{path}: a zarr group without multiscale metadata holding several 2-D arrays ({names}); "
        "give the path of the one to read"
    )


def _axis_names(path: Path, multiscale: dict, ndim: int) -> list[str]:
    """Axis names of a multiscale: NGFF 0.4+ dicts, 0.3 strings, before that t, c, z, y, x."""
    axes = multiscale.get("axes")
    if axes is None:
        names = ["t", "c", "z", "y", "x"][-ndim:]
    else:
        names = [str(a["name"] if isinstance(a, dict) else a).lower() for a in axes]
    if len(names) != ndim or not set(_SPATIAL) <= set(names):
        raise UserInputError(f"{path}: multiscale axes {names} do not describe its {ndim}-D array with y and x")
    return names


def _open_multiscale(path: Path, group, multiscale: dict) -> LazyImage:
    datasets = multiscale.get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise UserInputError(f"{path}: multiscale metadata without datasets; not an OME-Zarr image")
    try:
        array = group[datasets[0]["path"]]
    except KeyError:
        raise UserInputError(f"{path}: multiscale level '{datasets[0]['path']}' is missing") from None
    names = _axis_names(path, multiscale, array.ndim)
    plane = _squeezed(path, array, names)
    size = _ngff_pixel_size(path, multiscale, datasets[0], names)
    return LazyImage(plane, size, path, "ome-zarr", _chunks2d(array, plane))


def _squeezed(path: Path, array, names: list[str]):
    """The (H, W) plane of ``array`` (axes ``names``): singleton other axes dropped, longer ones refused."""
    if array.ndim == 2 and names[-2:] in (["y", "x"], ["dim_0", "dim_1"]):
        return array
    if names[0].startswith("dim_"):  # plain zarr: the last two axes are y, x
        names = names[:-2] + ["y", "x"]
    extra = {name: int(n) for name, n in zip(names, array.shape) if name not in _SPATIAL and n > 1}
    if extra:
        lengths = ", ".join(f"{name}={n}" for name, n in extra.items())
        raise UserInputError(
            f"{path}: has axes {lengths} besides y, x; the models take one gray plane (y, x): "
            "save one plane (t, c, z of length 1) and give that"
        )
    return Plane(array, names.index("y"), names.index("x"), path=path)


def _chunks2d(array, plane) -> tuple[int, int]:
    chunks = tuple(int(n) for n in array.chunks)
    if isinstance(plane, Plane):
        return chunks[plane.y_axis], chunks[plane.x_axis]
    return chunks[-2], chunks[-1]


def _scale_of(transforms: list[dict] | None, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for t in transforms or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    return scale


def _ngff_pixel_size(path: Path, multiscale: dict, level0: dict, names: list[str]) -> float | None:
    """Pixel size in micrometres from level 0's scale (times the multiscale's own) on y/x, or None (said)."""
    ndim = len(names)
    scale = _scale_of(level0.get("coordinateTransformations"), ndim)
    scale = [a * b for a, b in zip(scale, _scale_of(multiscale.get("coordinateTransformations"), ndim))]
    axes = multiscale.get("axes") or []
    units = {str(a.get("name", "")).lower(): a.get("unit") for a in axes if isinstance(a, dict)}
    unit = units.get("x")
    if not unit:
        say_note("OME-Zarr axes x has no unit: pixel size unknown", path)
        return None
    factor = um_per_unit(str(unit))
    if factor is None:
        say_note(f"OME-Zarr unit '{unit}' is not a length unit this reader knows: pixel size unknown", path)
        return None
    x_um, y_um = scale[names.index("x")] * factor, scale[names.index("y")] * factor
    if not (math.isfinite(x_um) and x_um > 0):
        say_note("OME-Zarr scale on x is not a positive size: pixel size unknown", path)
        return None
    if units.get("y") == unit and not math.isclose(x_um, y_um, rel_tol=1e-6):
        say_note(f"anisotropic pixels (x {x_um:.6g} \u00b5m, y {y_um:.6g} \u00b5m): using x", path)
    return x_um


# === TIFF ===


def _open_tiff(path: Path) -> LazyImage:
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            stacked = any(ax not in "YXS" and n > 1 for ax, n in zip(series.axes, series.shape))
            axes, n_pages = (tif.pages.first.axes if stacked else series.axes), len(tif.pages)
        if stacked:
            say_note("a TIFF stack is read lazily as its first page only", f"{path} ({n_pages} pages)")
        where = {"key": 0} if stacked else {"series": 0, "level": 0}
        store = tifffile.imread(path, aszarr=True, **where)
        array = zarr.open(store, mode="r")
    except (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError) as exc:
        raise UserInputError(f"{path}: not a readable TIFF ({exc})") from None
    if array.ndim == 2:
        plane = array
    else:
        plane = Plane(array, axes.index("Y"), axes.index("X"), axes.index("S") if "S" in axes else None, path)
    size, source = tiff_pixel_size_um(path)
    if size is None:
        say_note(f"no pixel size in the TIFF ({source})", path)
    return LazyImage(plane, size, path, "tiff", _chunks2d(array, plane), closer=store)
