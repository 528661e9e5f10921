"""Objects over frames: segment every frame, link, write and score the tracks.

- ``sequence.py``: THE pipeline (``predict.py --track`` and :func:`~unet_tf.tracking.sequence.track_sequence`):
  frames -> instances -> links -> files.
- ``link.py``: object tables per frame and LAP linking with divisions and gap closing (laptrack).
- ``motility.py``: per-track motility tables and the trajectory plot.
- ``ctc.py``: Cell Tracking Challenge result files and the DET / SEG / TRA scores (py-ctcmetrics).
"""
