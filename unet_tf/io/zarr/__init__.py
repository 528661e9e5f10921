"""OME-Zarr in and out: lazy 2-D reads of huge images (OME-Zarr, zarr, TIFF) and the OME-Zarr prediction output.

- ``_read.py``: :func:`is_zarr`, :func:`open_image` -> :class:`LazyImage` (``array[r0:r1, c0:c1]`` reads
  only that window), for OME-Zarr (level 0 of the first multiscale), plain zarr arrays and TIFF through
  tifffile's zarr view, so one blockwise path reads all three. Zarr v2 and v3 stores both open.
- ``_write.py``: :func:`create_output` / :func:`open_output` -> :class:`OutputZarr` (level-0 arrays that
  blockwise workers write chunk by chunk), :func:`finish_output` (pyramid + metadata) and
  :func:`write_ome_zarr` (a whole array as an OME-Zarr image).
- ``_ngff.py``: the NGFF metadata and the pyramid levels, written chunk window by chunk window.

The output layout (one folder that napari opens alone, the labels over the image)::

    out.ome.zarr/            multiscale image: a copy of the input, levels 0, 1, ...
        labels/mask/         the class mask (the values of ``_mask.tif``), image-label metadata
        labels/instances/    instance ids (when asked), image-label metadata
        probabilities/       multiscale image (c, y, x), float32, one channel per output class (when asked)

**NGFF version: 0.4 (zarr v2, "/" chunk keys).** ome-zarr-py 0.18's ``Reader`` opens 0.1 to 0.5 (a test
reads our output with it). napari-ome-zarr reads 0.4 in every release since 0.4.0 (2022): through
ome-zarr-py up to 0.6.x, and with its own zarr-v3-based reader from 0.7 (ome/napari-ome-zarr#123, tested
there on 0.4 and 0.5 images). 0.5 (zarr v3 only) opens in napari-ome-zarr 0.6.x only when ome-zarr-py
>= 0.12 sits underneath (ome/ome-zarr-py#470: an older install opens nothing). So 0.4 opens in every
napari install a user may have; it is also what bioformats2raw / NGFF-Converter write today
(glencoesoftware/NGFF-Converter#88). Reading takes 0.4 and 0.5 (and plain zarr v2 or v3) alike.

Coordinate transformations: level k has ``scale`` = pixel size * 2**k (micrometer; in pixels without
a pixel size). The image and probability levels are 2x2 means, whose pixel centres move by
(2**k - 1) / 2 level-0 pixels: their ``translation`` says so. Label levels take every other pixel
(labels are never averaged), whose centres stay on level-0 centres: no translation.
"""

from unet_tf.io.zarr._ngff import NGFF_VERSION
from unet_tf.io.zarr._read import LazyImage, Plane, is_zarr, open_image
from unet_tf.io.zarr._write import OutputZarr, create_output, finish_output, open_output, write_ome_zarr

__all__ = [
    "NGFF_VERSION",
    "LazyImage",
    "OutputZarr",
    "Plane",
    "create_output",
    "finish_output",
    "is_zarr",
    "open_image",
    "open_output",
    "write_ome_zarr",
]
