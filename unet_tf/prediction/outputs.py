"""The files of one predicted input: mask, instances, overlay(s), probabilities; single images and stacks.

Dtypes: ``<name>_mask.tif`` holds the class values in uint8, or uint16 when a
value exceeds 255 (:func:`unet_tf.io.writers.mask_dtype`). ``<name>_instances.tif`` is always uint16
(the Cell Tracking Challenge and napari convention), whatever the number of
objects; only an image with more than 65535 objects gets uint32 (said once),
and a stack page with that many is a UserInputError (its pages share one dtype).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from unet_tf.config import PredictConfig
from unet_tf.data.normalize import stretch
from unet_tf.errors import UserInputError, say_note
from unet_tf.io.writers import StackWriter, atomic_path, mask_dtype, write_mask, write_tiff
from unet_tf.models.file import ModelInfo


def n_probability_bands(n_outputs: int) -> int:
    """K': the bands per page of ``<name>_prob.tif`` for a model of ``n_outputs`` channels (``ModelInfo.n_outputs``).

    One per class: a binary model's one sigmoid channel P(class 1) gives two
    bands (1 - P, P); a softmax model gives its ``n_outputs`` channels.
    """
    return 2 if n_outputs == 1 else n_outputs


def probability_bands(prob: np.ndarray) -> np.ndarray:
    """(K', H, W) float32 bands of a (H, W, K) probability map: both classes for a binary model (K = 1).

    K' is :func:`n_probability_bands` of K. Written straight into the result:
    no (H, W, K') temporary beside it.
    """
    k = prob.shape[-1]
    bands = np.empty((n_probability_bands(k),) + prob.shape[:2], np.float32)
    if k == 1:
        np.subtract(1, prob[..., 0], out=bands[0], dtype=np.float32)
        bands[1] = prob[..., 0]
    else:
        for c in range(k):
            bands[c] = prob[..., c]
    return bands


INSTANCE_DTYPE = np.uint16  # <name>_instances.tif: the CTC and napari convention


def instance_dtype(max_id: int) -> type:
    """uint16 for instance ids up to 65535, uint32 above (up to 2**32 - 1); never uint8."""
    if not 0 <= max_id <= np.iinfo(np.uint32).max:
        raise ValueError(f"instance id {max_id} does not fit in uint32")
    return INSTANCE_DTYPE if max_id <= np.iinfo(INSTANCE_DTYPE).max else np.uint32


def write_instances(path: Path, instances: np.ndarray, pixel_size: float | None = None) -> None:
    """Write (H, W) instance ids (0 background) as a uint16 TIFF (uint32 above 65535 objects, said once)."""
    dtype = instance_dtype(int(instances.max(initial=0)))
    if dtype != INSTANCE_DTYPE:
        say_note("images with more than 65535 objects have their instance ids written as uint32", path)
    write_tiff(path, np.asarray(instances).astype(dtype, copy=False), pixel_size_um=pixel_size)


class ImageOutputs:
    """The files of one input, a single image or a stack: mask, overlay(s), probabilities.

    A stack of N pages gives ``<name>_mask.tif`` with N pages (and
    ``<name>_prob.tif`` with K' pages per input page, page-major) written one
    page at a time; overlays are ``<name>_overlay.png`` for one page and
    ``<name>_overlay_pNNN.png`` (1-based) for a stack. Files appear complete
    on a clean exit of the ``with`` block, or not at all.
    """

    def __init__(
        self,
        out_dir: Path,
        name: str,
        n_pages: int,
        info: ModelInfo,
        config: PredictConfig,
        pixel_size: float | None = None,
    ):
        self.out_dir, self.name, self.n_pages = out_dir, name, n_pages
        self.info, self.config, self.pixel_size = info, config, pixel_size
        self.stack = contextlib.ExitStack()
        self.mask_writer = self.prob_writer = self.instance_writer = None

    def __enter__(self) -> "ImageOutputs":
        if self.n_pages > 1:
            dtype = mask_dtype(max(self.info.class_values))
            self.mask_writer = self.stack.enter_context(
                StackWriter(self.out_dir / f"{self.name}_mask.tif", self.n_pages, dtype, self.pixel_size)
            )
            if self.config.save_probabilities:
                bands = n_probability_bands(self.info.n_outputs)
                self.prob_writer = self.stack.enter_context(
                    StackWriter(
                        self.out_dir / f"{self.name}_prob.tif", self.n_pages * bands, np.float32, self.pixel_size
                    )
                )
            if self.info.target == "instances" or self.config.split_touching:
                self.instance_writer = self.stack.enter_context(
                    StackWriter(
                        self.out_dir / f"{self.name}_instances.tif", self.n_pages, INSTANCE_DTYPE, self.pixel_size
                    )
                )
        return self

    def add(self, page: int | None, image: np.ndarray, result) -> None:
        """Write (or append) the outputs of one page (``result``: a ``Prediction``); ``page`` None: one image."""
        base = self.name if page is None else f"{self.name}_p{page + 1:03d}"
        if self.config.overlay:
            rgb = overlay_image(image, result.ids, self.info.class_names, instances=result.instances)
            write_png(self.out_dir / f"{base}_overlay.png", rgb)
        if self.mask_writer is None:
            write_mask(self.out_dir / f"{self.name}_mask.tif", result.mask, self.pixel_size)
            if result.instances is not None:
                write_instances(self.out_dir / f"{self.name}_instances.tif", result.instances, self.pixel_size)
            if self.config.save_probabilities:
                write_tiff(
                    self.out_dir / f"{self.name}_prob.tif",
                    probability_bands(result.probabilities),
                    pixel_size_um=self.pixel_size,
                )
            return
        self.mask_writer.append(result.mask)
        if self.instance_writer is not None:
            if int(result.instances.max(initial=0)) > np.iinfo(INSTANCE_DTYPE).max:
                raise UserInputError(
                    f"{self.name}: page {page + 1} has {int(result.instances.max())} objects, more than the 65535 "
                    "that a uint16 instance stack holds; predict its pages as single images"
                )
            self.instance_writer.append(result.instances)
        if self.prob_writer is not None:
            for band in probability_bands(result.probabilities):
                self.prob_writer.append(band)

    def __exit__(self, *exc) -> None:
        self.stack.__exit__(*exc)


def write_outputs(
    out_dir: Path,
    name: str,
    image: np.ndarray,
    result,
    info: ModelInfo,
    config: PredictConfig,
    pixel_size: float | None = None,
) -> None:
    """The files of a single image, exactly as ``predict.py`` writes them."""
    with ImageOutputs(out_dir, name, 1, info, config, pixel_size) as outputs:
        outputs.add(None, image, result)


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
