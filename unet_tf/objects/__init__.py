"""Class masks and probabilities -> objects -> one measured row per object.

- ``labels.py``: the one set of label-image helpers (connectivity structure, renumbering, checks).
- ``instances.py``: instance label images from probabilities or masks (watershed, split touching objects).
- ``morphometry.py``: object tables (area, shape, intensity, physical units) and their summaries.
- ``bands.py``: the same object table for an image fed in row bands (streamed prediction), O(band) memory.
"""
