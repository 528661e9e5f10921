"""The block plan: square interiors cut from the GLOBAL tile plan of a whole-image pass.

A block is a rectangle ``interior`` of the image (``block_size`` x
``block_size``, smaller at the right and bottom edges) plus a ``region``: the
interior grown by ``halo`` px on every side (clipped to the image), whose
probabilities the block computes (the halo gives the instance watershed its
context). The tiles a block predicts are exactly the tiles of
:func:`~unet_tf.prediction.tiled.predict_tiled`'s plan for the whole image
(:func:`~unet_tf.prediction.tiling.tiling_padding`,
:func:`~unet_tf.prediction.tiling.tile_starts`) that touch its region, so every
pixel gets the same tiles, the same weights and the same sums as in one pass
over the whole image. A block therefore needs no alignment with the tiles: any
size of at least one tile that is a multiple of the model's size divisor works.
"""

from __future__ import annotations

from dataclasses import dataclass

from unet_tf.errors import UserInputError
from unet_tf.prediction.tiled import check_tiling
from unet_tf.prediction.tiling import tile_starts, tiling_padding

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


@dataclass(frozen=True)
class Block:
    """One block: ``index`` (row, column) in the block grid, ``interior`` and ``region`` boxes (y0, y1, x0, x1)."""

    index: tuple[int, int]
    interior: Box
    region: Box

    @property
    def name(self) -> str:
        return f"{self.index[0]}_{self.index[1]}"


@dataclass(frozen=True)
class BlockPlan:
    """The blocks of an image of ``shape`` (H, W) and the global tile origins ``ys``, ``xs`` (image
    coordinates, negative in the virtual reflect padding) of its whole-image tile plan."""

    shape: tuple[int, int]
    tile: int
    overlap: int
    size_divisor: int
    block_size: int
    halo: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of blocks."""
        return tuple(-(-n // self.block_size) for n in self.shape)

    def blocks(self) -> list[Block]:
        """Every block, in raster order."""
        (height, width), b, h = self.shape, self.block_size, self.halo
        out = []
        for i in range(self.grid[0]):
            for j in range(self.grid[1]):
                y0, x0 = i * b, j * b
                y1, x1 = min(y0 + b, height), min(x0 + b, width)
                region = (max(y0 - h, 0), min(y1 + h, height), max(x0 - h, 0), min(x1 + h, width))
                out.append(Block((i, j), (y0, y1, x0, x1), region))
        return out

    def tiles(self, box: Box) -> tuple[list[int], list[int]]:
        """(tile rows, tile columns): the origins of the global tiles that touch ``box``."""
        y0, y1, x0, x1 = box
        return (
            [y for y in self.ys if y < y1 and y + self.tile > y0],
            [x for x in self.xs if x < x1 and x + self.tile > x0],
        )


def check_block_size(block_size: int, tile: int, size_divisor: int) -> None:
    """UserInputError naming both values unless ``block_size`` is at least ``tile`` and a multiple of the divisor."""
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, int)
        or block_size < tile
        or block_size % size_divisor
    ):
        raise UserInputError(
            f"`block_size` {block_size!r}: must be at least `predict.tile` {tile} and a multiple of the model's "
            f"size divisor {size_divisor}"
        )


def plan_blocks(
    shape: tuple[int, int], *, tile: int, overlap: int, size_divisor: int, block_size: int, halo: int = 0
) -> BlockPlan:
    """The :class:`BlockPlan` of an image of ``shape`` (H, W) for the tiling of ``predict_tiled``
    (``tile``, ``overlap``, ``size_divisor``), blocks of ``block_size`` px and ``halo`` px of context."""
    height, width = (int(n) for n in shape)
    check_tiling(tile, overlap, size_divisor)
    check_block_size(block_size, tile, size_divisor)
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    (top, bottom), (left, right) = tiling_padding((height, width), tile, overlap, size_divisor)
    ys = tuple(y - top for y in tile_starts(top + height + bottom, tile, overlap, size_divisor))
    xs = tuple(x - left for x in tile_starts(left + width + right, tile, overlap, size_divisor))
    return BlockPlan((height, width), tile, overlap, size_divisor, block_size, halo, ys, xs)
