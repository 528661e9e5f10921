"""One synthetic TEM image: layout, texture, microscope; with its class and instance labels."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from unet_tf.errors import UserInputError
from unet_tf.synthetic.drawing import layout_and_draw
from unet_tf.synthetic.shapes import AMP_BLOB, AMP_COLL, AMP_FINE, AMP_LOW, BASE, MYEL, Canvas, new_canvas


class TemSample(NamedTuple):
    """A synthetic TEM image with what the generator knows about it.

    Attributes:
        image: uint16 (H, W), the micrograph, values roughly in [1000, 55000] (myelin darkest).
        label: uint8 (H, W), class values (:data:`TEM_CLASS_VALUES`).
        instances: uint16 (H, W) (uint32 beyond 65535 objects), one id per object, 0 where there is
            none: every myelinated fibre (axon + myelin, the ``myelinated_axon`` region of one fibre),
            unmyelinated axon, blood vessel and Schwann nucleus (with its cytoplasm rim). The
            background class (including Remak Schwann cytoplasm) has id 0, every other pixel an id.
        instance_classes: uint8 (N + 1,), the class value of each id; ``instance_classes[0] == 0``.
            Ids are 1..N in drawing order; an object entirely covered by later ones keeps its entry
            but no pixel.
        n_fibres: int, the myelinated fibres the generator placed.
    """

    image: np.ndarray
    label: np.ndarray
    instances: np.ndarray
    instance_classes: np.ndarray
    n_fibres: int

    @property
    def fibre_ids(self) -> np.ndarray:
        """int array: the instance ids of the myelinated fibres."""
        return np.flatnonzero(self.instance_classes == MYEL)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma) -> np.ndarray:
    """White noise filtered by a Gaussian of ``sigma`` (pixels, scalar or per
    axis), scaled to unit standard deviation; float32 of ``shape``."""
    f = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return f / max(float(f.std()), 1e-6)


def low_freq(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Smooth zero-mean unit-std field varying over ~``cells`` pixels; float32.

    Random values on a coarse grid, interpolated separably with Gaussian
    weights (two small matrix products: fast for any image size).
    """

    def weights(n: int) -> np.ndarray:  # (n, g) row-normalized Gaussian weights
        g = int(np.ceil(n / cells)) + 3
        nodes = (np.arange(g) - 1.0) * cells
        wgt = np.exp(-0.5 * ((np.arange(n)[:, None] - nodes[None]) / (0.6 * cells)) ** 2)
        return (wgt / wgt.sum(axis=1, keepdims=True)).astype(np.float32)

    wy, wx = weights(shape[0]), weights(shape[1])
    coarse = rng.standard_normal((wy.shape[1], wx.shape[1])).astype(np.float32)
    f = wy @ coarse @ wx.T
    f -= f.mean()
    return f / max(float(f.std()), 1e-6)


def as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int or a pair; errors name ``size``."""
    hw = (size, size) if np.isscalar(size) else tuple(size)
    if len(hw) != 2 or any(int(v) != v or int(v) < 16 for v in hw):
        raise UserInputError(f"size: expected an integer >= 16 or a (height, width) pair, got {size!r}")
    return int(hw[0]), int(hw[1])


def texture(cv: Canvas, rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Brightness (float32 (H, W), 0 black .. 1 white) of the drawn materials with their texture fields."""
    fine = smooth_noise(rng, hw, 0.7)
    streak_a = smooth_noise(rng, hw, (0.6, 4.0))
    streak_b = smooth_noise(rng, hw, (4.0, 0.6))
    mix = 1.0 / (1.0 + np.exp(-3.0 * low_freq(rng, hw, 200.0)))
    collagen = mix * streak_a + (1.0 - mix) * streak_b
    low = low_freq(rng, hw, 120.0)
    base = BASE + rng.normal(0.0, 0.02, BASE.shape).astype(np.float32)  # contrast jitter
    m = cv.material
    return base[m] + AMP_FINE[m] * fine + AMP_BLOB[m] * cv.blob + AMP_COLL[m] * collagen + AMP_LOW[m] * low + cv.offset


def microscope(x: np.ndarray, rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Uneven illumination, PSF blur, shot + read noise and the camera range: uint16 (H, W)."""
    gain = 1.0 + rng.uniform(0.05, 0.12) * low_freq(rng, hw, 400.0)
    x = ndi.gaussian_filter(np.clip(x * gain, 0.0, None), rng.uniform(0.8, 1.4))
    photons = rng.uniform(150.0, 400.0)
    x = rng.poisson(x * photons).astype(np.float32) / np.float32(photons)
    x += rng.normal(0.0, 0.008, hw).astype(np.float32)
    lo, hi = rng.uniform(1500.0, 3500.0), rng.uniform(38000.0, 48000.0)
    return np.clip(lo + x * (hi - lo), 0, 65535).astype(np.uint16)


def generate_tem_sample(size: int | tuple[int, int] = 1024, seed: int = 0) -> TemSample:
    """One synthetic nerve TEM image, its class label and its instance ids.

    Args:
        size: ``N`` for an N x N image or ``(height, width)``; at least 16. Default 1024.
            Objects have fixed sizes in pixels (a 1024 image shows ~250 myelinated fibers);
            any image of size >= 256 contains all five classes.
        seed: seed of ``np.random.default_rng``; same seed, same arrays. Default 0.

    Returns:
        :class:`TemSample`; its ``image`` and ``label`` are those of :func:`generate_tem_image`.

    Example:
        >>> s = generate_tem_sample(256, seed=0)
        >>> len(np.unique(s.instances[s.label == 100])) == s.n_fibres
        True
    """
    hw = as_hw(size)
    rng = np.random.default_rng(seed)
    cv = new_canvas(hw, blob=smooth_noise(rng, hw, 1.8))
    n_fibres = layout_and_draw(cv, rng)
    image = microscope(texture(cv, rng, hw), rng, hw)
    dtype = np.uint16 if len(cv.classes) <= 65536 else np.uint32
    return TemSample(image, cv.label, cv.instances.astype(dtype), np.array(cv.classes, np.uint8), n_fibres)


def generate_tem_image(size: int | tuple[int, int] = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic nerve TEM image and its label.

    Args:
        size: ``N`` for an N x N image or ``(height, width)``; at least 16. Default 1024.
            Objects have fixed sizes in pixels (a 1024 image shows ~250
            myelinated fibers); any image of size >= 256 contains all five
            classes (one vessel, one Remak bundle and one Schwann nucleus are
            always placed fully inside).
        seed: seed of ``np.random.default_rng``; same seed, same arrays. Default 0.

    Returns:
        ``(image, label)``: image uint16 (H, W) with values roughly in
        [1000, 55000] (myelin darkest); label uint8 (H, W) with values in
        :data:`TEM_CLASS_VALUES`. :func:`generate_tem_sample` also gives the instance ids.
    """
    sample = generate_tem_sample(size, seed)
    return sample.image, sample.label
