"""Overlays: classes coloured over the image, with a legend, written as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .errors import UserInputError
from .io import atomic_path
from .preprocessing import stretch

# Class colours (RGB) for overlays; class 0 (background) is left uncoloured.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


def instance_outlines(instances: np.ndarray) -> np.ndarray:
    """bool (H, W): pixels of an object whose right or lower neighbour belongs to another object or background."""
    edge = np.zeros(instances.shape, bool)
    edge[:, :-1] |= instances[:, :-1] != instances[:, 1:]
    edge[:-1, :] |= instances[:-1, :] != instances[1:, :]
    return edge & (instances > 0)


def blend_table(n_classes: int, alpha: float = 0.45) -> np.ndarray:
    """(C, 256, 3) uint8: the overlay colour of gray level g under class c (class 0: g itself).

    ``((1 - alpha) * g + alpha * colour[c]).astype(uint8)`` in float64, the
    blend of :func:`overlay_image`, tabulated once so that no float copy of the image is made.
    """
    gray = np.arange(256, dtype=np.uint8)[:, None]
    table = np.repeat(np.repeat(gray, 3, axis=1)[None], n_classes, axis=0)
    table[1:] = ((1 - alpha) * gray[None] + alpha * class_colours(n_classes)[1:, None, :]).astype(np.uint8)
    return table


def class_colours(n_classes: int) -> np.ndarray:
    """(C, 3) float32 RGB of classes 0..C-1 (class 0 black: never drawn)."""
    return np.array([(0, 0, 0)] + [PALETTE[(c - 1) % len(PALETTE)] for c in range(1, n_classes)], np.float32)


def overlay_image(
    image: np.ndarray,
    ids: np.ndarray,
    class_names: Sequence[str],
    alpha: float = 0.45,
    instances: np.ndarray | None = None,
    rows_per_chunk: int = 256,
) -> np.ndarray:
    """RGB uint8 (H, W, 3): gray image with classes 1.. coloured, a legend box, and instance outlines (white).

    The gray level is the image stretched between its 1 and 99.5 percentiles.
    Built ``rows_per_chunk`` rows at a time: memory is the result (3 B/px),
    the percentile's copy of the image and O(rows_per_chunk x W) temporaries.
    """
    lo, hi = np.percentile(image, [1, 99.5])  # percentile_normalize(image, 1, 99.5), row block by row block
    table = blend_table(len(class_names), alpha).reshape(-1, 3)
    colours = class_colours(len(class_names))
    rgb = np.empty(image.shape + (3,), np.uint8)
    for row0 in range(0, image.shape[0], rows_per_chunk):
        rows = slice(row0, row0 + rows_per_chunk)
        gray = (np.clip(stretch(image[rows], lo, hi), 0, 1) * 255).astype(np.uint8)
        rgb[rows] = table[ids[rows].astype(np.intp) * 256 + gray]
        if instances is not None:  # one row more: the lower neighbour of the block's last row
            outline = instance_outlines(instances[row0 : row0 + rows_per_chunk + 1])[: len(gray)]
            rgb[rows][outline] = 255
    scale = max(0.4, min(rgb.shape[:2]) / 1000)
    pad, line = int(8 * scale), int(22 * scale)
    width = int(12 * scale * max(len(n) for n in class_names[1:])) + 3 * pad + line
    height = pad + line * (len(class_names) - 1) + pad
    cv2.rectangle(rgb, (0, 0), (min(width, rgb.shape[1] - 1), min(height, rgb.shape[0] - 1)), (255, 255, 255), -1)
    for c in range(1, len(class_names)):
        y = pad + (c - 1) * line
        cv2.rectangle(rgb, (pad, y + 2), (pad + line - 6, y + line - 4), tuple(int(v) for v in colours[c]), -1)
        cv2.putText(
            rgb,
            class_names[c],
            (2 * pad + line - 6, y + line - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            (0, 0, 0),
            max(1, int(scale)),
            cv2.LINE_AA,
        )
    return rgb


def write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), rgb[..., ::-1]):
            raise UserInputError(f"{path}: could not write the overlay")
