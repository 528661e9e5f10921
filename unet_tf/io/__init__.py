"""Files in and out, no TensorFlow: everything that touches the disk as pixels or tables.

- ``images.py``: read one image or label file (TIFF through rasterio, PNG/JPEG/BMP through OpenCV, colour to
  gray) and multi-page stacks / hyperstacks page by page (tifffile).
- ``windows.py``: image headers and row windows of files too large to read whole.
- ``writers.py``: atomic writes (:func:`~unet_tf.io.writers.atomic_path`), masks and TIFFs with their pixel size,
  stacks page by page and tiled (Big)TIFFs band by band.
- ``metadata.py``: the physical pixel size in TIFF metadata (OME, ImageJ, resolution tags), read and written.
- ``zarr/``: OME-Zarr (NGFF 0.4) in and out: lazy 2-D reads of OME-Zarr, plain zarr and TIFF (through tifffile's
  zarr view), and the output folder of blockwise prediction (image copy, ``labels/``, probabilities, pyramid).
- ``tables.py``: CSV files written atomically and aligned terminal tables.
"""
