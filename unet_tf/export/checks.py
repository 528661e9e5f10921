"""What every export format shares: the check of an exported file against the Keras model, and its error."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from unet_tf.errors import UserInputError


class ExportCheckError(UserInputError):
    """An exported file disagrees with the Keras model by more than :data:`ATOL`."""


def custom_layers(model) -> list[str]:
    """Names of the layers of ``model`` that are not plain Keras layers (they need unet_tf to load)."""
    return [
        f"{layer.name} ({type(layer).__name__})"
        for layer in model.layers
        if not type(layer).__module__.startswith("keras.")
    ]


ATOL = 1e-4


Log = Callable[[str], None]


def check_sizes(size_divisor: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two (h, w) test sizes, multiples of ``size_divisor``: square and non-square.

    For ``size_divisor`` 4 or 16: (64, 64) and (96, 128).
    """
    side = max(64, -(-64 // size_divisor) * size_divisor)
    height = -(-side * 3 // (2 * size_divisor)) * size_divisor
    return (side, side), (height, max(2 * side, height + size_divisor))


def max_difference(
    reference: Callable, candidate: Callable, sizes, seed: int = 0, name: str = "exported model"
) -> float:
    """Largest |reference(x) - candidate(x)| over random float32 batches (2, h, w, 1) of ``sizes``
    (``name``, the candidate's, goes into the error when the shapes differ)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for h, w in sizes:
        x = rng.normal(0.5, 0.3, (2, h, w, 1)).astype(np.float32)
        a, b = np.asarray(reference(x), np.float32), np.asarray(candidate(x), np.float32)
        if a.shape != b.shape:
            raise ExportCheckError(f"{name} gives shape {b.shape}, Keras {a.shape}, for input {x.shape}")
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def report_check(name: str, diff: float, path: Path, log: Log) -> float:
    log(f"{name}: max abs difference to Keras {diff:.2e} (limit {ATOL:.0e})")
    if not diff <= ATOL:
        raise ExportCheckError(f"{path}: {name} output differs from the Keras model by {diff:.2e} > {ATOL:.0e}")
    return diff


def keras_reference(bare) -> Callable[[np.ndarray], np.ndarray]:
    """float32 (B, h, w, 1) -> Keras probabilities float32 (B, h, w, K)."""
    return lambda x: bare(x, training=False).numpy()
