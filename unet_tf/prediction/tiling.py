"""Tiling plan and blending window of :mod:`unet_tf.prediction.tiled`: small pure functions.

Padding (:func:`tiling_padding`): the image is reflect-padded (virtually:
border tiles are gathered with reflected indices, :func:`reflect_indices`) by a
margin of ``overlap / 2`` rounded up to a multiple of ``size_divisor`` on every
side, then at the bottom / right up to at least one tile and to a multiple of
``size_divisor``. Tile origins (:func:`tile_starts`) are multiples of
``size_divisor`` too, so every tile sees the same pooling grid as a whole-image
pass. The importance window (:func:`blending_window`) is separable
(:func:`window_line`), so weight sums over a grid of tiles are outer products
of 1-D sums.

The tile loop that uses them is :mod:`unet_tf.prediction.tiled`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

WINDOWS = ("gaussian", "cosine")


# === Tiling plan ===


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Origins of tiles of size ``tile`` covering ``[0, length)`` along one axis.

    Neighbouring tiles overlap by at least ``overlap`` px; the tiles are spread
    as evenly as possible, the first starts at 0 and the last ends exactly at
    ``length``. With ``length <= tile`` the answer is ``[0]`` (the caller pads).
    With ``align > 1`` every origin is a multiple of ``align``; then
    ``length - tile`` must be a multiple of ``align`` and ``overlap`` at most
    ``tile - align``. (nnU-Net's ``compute_steps_for_sliding_window``, in
    integer units of ``align``.)
    """
    if tile < 1 or align < 1:
        raise ValueError(f"tile and align must be positive, got tile={tile}, align={align}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    if length <= tile:
        return [0]
    span = length - tile
    if span % align:
        raise ValueError(f"length - tile = {span} is not a multiple of align={align}")
    max_step = (tile - overlap) // align  # in units of align
    if max_step < 1:
        raise ValueError(f"overlap {overlap} leaves no step of {align} px within tile {tile}")
    units = span // align
    gaps = -(-units // max_step)
    # round(i * units / gaps) for i = 0..gaps: steps are floor or ceil of
    # units / gaps <= max_step, exact integers, last = units.
    return [align * ((2 * i * units + gaps) // (2 * gaps)) for i in range(gaps + 1)]


def plan_tiles(shape: tuple[int, int], tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """(y, x) origins of the ``tile`` x ``tile`` tiles covering an image of ``shape`` (H, W)."""
    ys = tile_starts(shape[0], tile, overlap, align)
    xs = tile_starts(shape[1], tile, overlap, align)
    return [(y, x) for y in ys for x in xs]


def tiling_padding(
    shape: tuple[int, int], tile: int, overlap: int, size_divisor: int = 1
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` padding that :func:`~unet_tf.prediction.tiled.predict_tiled` applies.

    ``margin = ceil(overlap / 2)`` rounded up to a multiple of ``size_divisor``
    on every side; bottom and right get more so that each padded side is at
    least ``tile`` and a multiple of ``size_divisor``.
    """
    margin = -(-math.ceil(overlap / 2) // size_divisor) * size_divisor
    pads = []
    for n in shape:
        padded = max(tile, -(-(n + 2 * margin) // size_divisor) * size_divisor)
        pads.append((margin, padded - n - margin))
    return pads[0], pads[1]


# === Blending window ===


@functools.lru_cache(maxsize=16)
def window_line(tile: int, kind: str = "gaussian", sigma_scale: float = 1 / 8, floor: float = 1e-4) -> np.ndarray:
    """One axis of :func:`blending_window`: (tile,) float64, read-only, cached.

    ``gaussian``: ``exp(-d**2 / (2 sigma**2))`` with ``sigma = sigma_scale *
    tile`` and ``d`` the distance of a pixel centre from the tile centre
    (nnU-Net's importance map; at the tile border it is exp(-8) = 3.4e-4).
    ``cosine``: the Hann window ``sin(pi (i + 1/2) / tile)**2``. Symmetric,
    scaled to a maximum of 1 and raised to at least ``floor``.
    """
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    centres = np.arange(tile, dtype=np.float64) + 0.5
    if kind == "gaussian":
        sigma = sigma_scale * tile
        line = np.exp(-((centres - tile / 2) ** 2) / (2 * sigma**2))
    elif kind == "cosine":
        line = np.sin(np.pi * centres / tile) ** 2
    else:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {kind!r}")
    line = np.maximum(line / line.max(), floor)
    line.flags.writeable = False
    return line


@functools.lru_cache(maxsize=16)
def blending_window(tile: int, kind: str = "gaussian", sigma_scale: float = 1 / 8, floor: float = 1e-4) -> np.ndarray:
    """Importance window (tile, tile) float32, read-only, cached.

    The outer product of :func:`window_line` with itself: maximum 1 at the
    centre, symmetric under rot90 and flips, at least ``floor**2`` (1e-8)
    everywhere, so tile borders still count where no other tile covers them
    (nnU-Net floors its map the same way). Being separable, the sum of the
    windows over a grid of tiles is the outer product of two 1-D sums, which is
    how :func:`~unet_tf.prediction.tiled.predict_tiled` keeps its weights in O(H + W) memory.
    """
    line = window_line(tile, kind, sigma_scale, floor)
    window = np.outer(line, line).astype(np.float32)
    window.flags.writeable = False
    return window


def reflect_indices(start: int, size: int, n: int) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions ``start .. start+size-1``
    of its reflect-padded extension (``np.pad(mode="reflect")``, edge not repeated,
    repeated as often as needed)."""
    index = np.arange(start, start + size)
    if n == 1:
        return np.zeros(size, np.intp)
    period = 2 * (n - 1)
    index = index % period
    return np.where(index >= n, period - index, index)
