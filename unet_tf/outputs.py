"""The files of one predicted input: mask, instances, overlay(s), probabilities; single images and stacks.

Dtypes: ``<name>_mask.tif`` holds the class values in uint8, or uint16 when a
value exceeds 255 (``io.mask_dtype``). ``<name>_instances.tif`` is always uint16
(the Cell Tracking Challenge and napari convention), whatever the number of
objects; only an image with more than 65535 objects gets uint32 (said once),
and a stack page with that many is a UserInputError (its pages share one dtype).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .config import PredictConfig
from .errors import UserInputError
from .io import mask_dtype, write_mask, write_tiff
from .model_file import ModelInfo
from .notes import say_note
from .overlay import overlay_image, write_png
from .tiff_writers import StackWriter


def probability_bands(prob: np.ndarray) -> np.ndarray:
    """(K', H, W) float32 bands of a (H, W, K) probability map: both classes for a binary model (K = 1).

    Written straight into the result: no (H, W, K') temporary beside it.
    """
    k = prob.shape[-1]
    bands = np.empty((2 if k == 1 else k,) + prob.shape[:2], np.float32)
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
                bands = 2 if self.info.n_classes == 2 else self.info.n_classes
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
