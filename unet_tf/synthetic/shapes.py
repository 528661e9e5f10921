"""Geometry, materials and the canvas of the synthetic TEM generator.

Objects are perturbed ellipses (:class:`Shape`); renderers write into a
:class:`Canvas` of full-image arrays: the material code of each pixel (how it
looks), its class value (the label) and its instance id (which object it
belongs to). Pixels go to the object with the smallest normalized distance
(:func:`claim`), so touching objects meet along a flattened contact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# The label values and names of the tem layout (DESIGN.md), written by this generator.
TEM_CLASS_VALUES = (0, 50, 100, 150, 200)
TEM_CLASS_NAMES = ("background", "blood_vessel", "myelinated_axon", "unmyelinated_axon", "schwann_cell")

BG, VESSEL, MYEL, UNMY, SCHWANN = TEM_CLASS_VALUES

# Materials (what a pixel looks like; finer than the classes).
(
    M_ECM,
    M_MYELIN,
    M_AXO,
    M_UNMY,
    M_REMAK,
    M_LUMEN,
    M_ENDO,
    M_RBC,
    M_NUC,
    M_HETERO,
    M_SCYTO,
    M_MEMBRANE,
    M_MITO,
    M_SPLIT,
) = range(14)
# Per material: base brightness (0 = black, 1 = white), amplitude of the fine
# speckle, of the blob/chromatin field, of the collagen streak field and of the
# low-frequency field.
BASE = np.array([0.56, 0.15, 0.74, 0.71, 0.46, 0.79, 0.36, 0.19, 0.50, 0.21, 0.47, 0.38, 0.42, 0.34], np.float32)
AMP_FINE = np.array([0.05, 0.02, 0.045, 0.03, 0.04, 0.015, 0.04, 0.02, 0.06, 0.03, 0.04, 0.02, 0.03, 0.02], np.float32)
AMP_BLOB = np.array([0.0, 0.0, 0.0, 0.0, 0.02, 0.01, 0.03, 0.0, 0.05, 0.02, 0.02, 0.0, 0.0, 0.0], np.float32)
AMP_COLL = np.array([0.07, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32)
AMP_LOW = np.array([0.05, 0.015, 0.03, 0.03, 0.03, 0.03, 0.02, 0.01, 0.02, 0.01, 0.02, 0.01, 0.01, 0.01], np.float32)


class Shape(NamedTuple):
    """A perturbed ellipse: centre (y, x), semi-axes a >= b, angle, harmonics."""

    cy: float
    cx: float
    a: float
    b: float
    theta: float
    amps: tuple  # amplitudes of the boundary harmonics k = 2, 3, ...
    phases: tuple

    @property
    def bound(self) -> float:
        """Radius of a circle that surely contains the shape."""
        return self.a * (1.0 + float(np.sum(np.abs(self.amps)))) + 1.0


class Canvas(NamedTuple):
    """Full-image arrays that the object renderers write into (in place)."""

    material: np.ndarray  # int8 (H, W) material code
    label: np.ndarray  # uint8 (H, W) class value
    rho: np.ndarray  # float32 (H, W) normalized distance of the owning object
    offset: np.ndarray  # float32 (H, W) per-object brightness offset
    blob: np.ndarray  # float32 (H, W) smooth blob noise (mitochondria, chromatin)
    instances: np.ndarray  # int32 (H, W) instance id of the owning object, 0 = none
    classes: list  # class value of each instance id; classes[0] = 0 (no instance)


def new_canvas(hw: tuple[int, int], blob: np.ndarray) -> Canvas:
    """An empty canvas of ``hw`` pixels (all background, no owner) with the given blob field."""
    return Canvas(
        material=np.zeros(hw, np.int8),
        label=np.zeros(hw, np.uint8),
        rho=np.full(hw, np.inf, np.float32),
        offset=np.zeros(hw, np.float32),
        blob=blob,
        instances=np.zeros(hw, np.int32),
        classes=[0],
    )


def paint(cv: Canvas, sl, mask: np.ndarray, class_value: int) -> int:
    """Give the pixels ``mask`` of box ``sl`` the class ``class_value`` and one new instance id.

    Background (class 0) gets no instance: its pixels' id becomes 0. An empty
    mask creates no instance.

    Returns:
        int, the new instance id (0 for background or an empty mask).
    """
    cv.label[sl][mask] = class_value
    ident = 0
    if class_value != BG and mask.any():
        ident = len(cv.classes)
        cv.classes.append(int(class_value))
    cv.instances[sl][mask] = ident
    return ident


def random_shape(
    rng: np.random.Generator, cy: float, cx: float, radius: float, max_aspect: float, wobble: float, n_harm: int = 4
) -> Shape:
    """A random perturbed ellipse of mean radius ``radius`` (pixels)."""
    q = 1.0 + (max_aspect - 1.0) * rng.random() ** 2  # mostly round
    amps = tuple(float(rng.normal(0.0, wobble / k)) for k in range(2, 2 + n_harm))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * np.pi, n_harm))
    return Shape(cy, cx, radius * np.sqrt(q), radius / np.sqrt(q), float(rng.uniform(0, np.pi)), amps, phases)


def bbox(shape_hw: tuple[int, int], cy: float, cx: float, r: float):
    """Slices of the image box of half-size r around (cy, cx), or None if empty."""
    h, w = shape_hw
    y0, y1 = max(0, int(np.floor(cy - r))), min(h, int(np.ceil(cy + r)) + 1)
    x0, x1 = max(0, int(np.floor(cx - r))), min(w, int(np.ceil(cx + r)) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    return slice(y0, y1), slice(x0, x1)


def shape_rho(s: Shape, sl) -> tuple[np.ndarray, np.ndarray]:
    """Normalized distance rho (< 1 inside) and ellipse angle phi on box ``sl``.

    Returns two float32 arrays of the box's shape.
    """
    dy = (np.arange(sl[0].start, sl[0].stop, dtype=np.float32) - s.cy)[:, None]
    dx = (np.arange(sl[1].start, sl[1].stop, dtype=np.float32) - s.cx)[None, :]
    c, sn = np.float32(np.cos(s.theta)), np.float32(np.sin(s.theta))
    u = (dx * c + dy * sn) / np.float32(s.a)
    v = (dy * c - dx * sn) / np.float32(s.b)
    phi = np.arctan2(v, u)
    mod = np.ones_like(phi)
    for k, (amp, ph) in enumerate(zip(s.amps, s.phases), start=2):
        mod += np.float32(amp) * np.cos(k * phi + np.float32(ph))
    return np.sqrt(u * u + v * v) / np.maximum(mod, 0.3), phi


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def claim(cv: Canvas, sl, rho_t: np.ndarray) -> np.ndarray:
    """Give the pixels of box ``sl`` with rho_t < 1 and < the current owner's rho
    to the new object; returns that boolean mask (box shape).

    Nearest-normalized-distance ownership makes touching objects meet along a
    flattened contact instead of one being cut by the other.
    """
    cur = cv.rho[sl]
    won = (rho_t < 1.0) & (rho_t < cur)
    cur[won] = rho_t[won]
    return won


def pack_ok(circles: np.ndarray, n: int, cy: np.ndarray, cx: np.ndarray, r: np.ndarray) -> bool:
    """True if the new circles (cy, cx, r) overlap none of ``circles[:n]``.

    ``circles`` is float64 (capacity, 3) rows of (y, x, radius + margin).
    """
    if n == 0:
        return True
    c = circles[:n]
    d2 = (c[:, 0, None] - cy[None]) ** 2 + (c[:, 1, None] - cx[None]) ** 2
    return bool(np.all(d2 >= (c[:, 2, None] + r[None]) ** 2))
