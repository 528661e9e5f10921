"""Scores of predictions against ground truth, NumPy only.

- ``scores.py``: the one set of count formulas (Dice, IoU, Tversky from TP/FP/FN) that the Keras metrics and
  losses use too.
- ``semantic.py``: per-class scores of class masks, as table rows (``metrics.csv``).
- ``matching.py``: object matching of instance label images: AP at IoU thresholds, PQ, CTC SEG.
"""
