"""Procedural peripheral-nerve-like TEM images: the embedded `tem` demo dataset.

A transverse section of an endoneurium as seen in bright-field TEM (dense =
dark), rendered at a fixed pixel scale (object sizes are in pixels and do not
scale with the image size: a larger image is a larger field of view).

Classes (gray values of the label image):

====  ===================  ==================================================
 0    background           textured extracellular matrix (collagen), Remak
                           Schwann cytoplasm between unmyelinated axons
 50   blood_vessel         pale lumen + darker endothelial wall (with nuclear
                           bulges), sometimes a dense red blood cell inside
 100  myelinated_axon      dark myelin ring of varying thickness + pale,
                           speckled axoplasm with darker mitochondria
 150  unmyelinated_axon    small pale round profiles with a thin membrane,
                           grouped in Remak-bundle-like clusters
 200  schwann_cell         crescent nuclei hugging a myelinated fiber (or a
                           Remak bundle): textured chromatin, dark
                           heterochromatin at the rim, thin cytoplasm rim
====  ===================  ==================================================

The images are made deliberately hard for a global threshold: axoplasm,
unmyelinated axons and vessel lumen are all pale; red blood cells and
heterochromatin are as dark as myelin; Schwann nuclei overlap the background
gray levels. On top come per-image contrast jitter, an uneven illumination
(low-frequency gain field), a Gaussian PSF blur and Poisson + Gaussian noise.

Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives
the same arrays. Run ``python -m unet_tf.synthetic --out DIR`` to write a set.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from scipy import ndimage as ndi

from .errors import UserInputError
from .io import write_tiff

# the label values and names of the tem layout (DESIGN.md), written by this generator
TEM_CLASS_VALUES = (0, 50, 100, 150, 200)
TEM_CLASS_NAMES = ("background", "blood_vessel", "myelinated_axon", "unmyelinated_axon", "schwann_cell")

__all__ = [
    "TEM_CLASS_VALUES",
    "TEM_CLASS_NAMES",
    "generate_tem_image",
    "write_tem_dataset",
    "otsu_threshold",
    "dice_score",
    "otsu_baseline",
    "main",
]

_BG, _VESSEL, _MYEL, _UNMY, _SCHWANN = TEM_CLASS_VALUES

# Materials (what a pixel looks like; finer than the classes).
(
    _M_ECM, _M_MYELIN, _M_AXO, _M_UNMY, _M_REMAK, _M_LUMEN, _M_ENDO, _M_RBC,
    _M_NUC, _M_HETERO, _M_SCYTO, _M_MEMBRANE, _M_MITO, _M_SPLIT,
) = range(14)
# Per material: base brightness (0 = black, 1 = white), amplitude of the fine
# speckle, of the blob/chromatin field and of the collagen streak field.
_BASE = np.array([0.56, 0.15, 0.74, 0.71, 0.46, 0.79, 0.36, 0.19,
                  0.50, 0.21, 0.47, 0.38, 0.42, 0.34], np.float32)
_AMP_FINE = np.array([0.05, 0.02, 0.045, 0.03, 0.04, 0.015, 0.04, 0.02,
                      0.06, 0.03, 0.04, 0.02, 0.03, 0.02], np.float32)
_AMP_BLOB = np.array([0.0, 0.0, 0.0, 0.0, 0.02, 0.01, 0.03, 0.0,
                      0.05, 0.02, 0.02, 0.0, 0.0, 0.0], np.float32)
_AMP_COLL = np.array([0.07, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                      0.0, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32)
_AMP_LOW = np.array([0.05, 0.015, 0.03, 0.03, 0.03, 0.03, 0.02, 0.01,
                     0.02, 0.01, 0.02, 0.01, 0.01, 0.01], np.float32)


class _Shape(NamedTuple):
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


class _Canvas(NamedTuple):
    """Full-image arrays that the object renderers write into (in place)."""

    material: np.ndarray  # int8 (H, W) material code
    label: np.ndarray  # uint8 (H, W) class value
    rho: np.ndarray  # float32 (H, W) normalized distance of the owning object
    offset: np.ndarray  # float32 (H, W) per-object brightness offset
    blob: np.ndarray  # float32 (H, W) smooth blob noise (mitochondria, chromatin)


# ---------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------

def _random_shape(rng: np.random.Generator, cy: float, cx: float, radius: float,
                  max_aspect: float, wobble: float, n_harm: int = 4) -> _Shape:
    """A random perturbed ellipse of mean radius ``radius`` (pixels)."""
    q = 1.0 + (max_aspect - 1.0) * rng.random() ** 2  # mostly round
    amps = tuple(float(rng.normal(0.0, wobble / k)) for k in range(2, 2 + n_harm))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * np.pi, n_harm))
    return _Shape(cy, cx, radius * np.sqrt(q), radius / np.sqrt(q),
                  float(rng.uniform(0, np.pi)), amps, phases)


def _bbox(shape_hw: tuple[int, int], cy: float, cx: float, r: float):
    """Slices of the image box of half-size r around (cy, cx), or None if empty."""
    h, w = shape_hw
    y0, y1 = max(0, int(np.floor(cy - r))), min(h, int(np.ceil(cy + r)) + 1)
    x0, x1 = max(0, int(np.floor(cx - r))), min(w, int(np.ceil(cx + r)) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _shape_rho(s: _Shape, sl) -> tuple[np.ndarray, np.ndarray]:
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


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _claim(cv: _Canvas, sl, rho_t: np.ndarray) -> np.ndarray:
    """Give the pixels of box ``sl`` with rho_t < 1 and < the current owner's rho
    to the new object; returns that boolean mask (box shape).

    Nearest-normalized-distance ownership makes touching objects meet along a
    flattened contact instead of one being cut by the other.
    """
    cur = cv.rho[sl]
    won = (rho_t < 1.0) & (rho_t < cur)
    cur[won] = rho_t[won]
    return won


def _pack_ok(circles: np.ndarray, n: int, cy: np.ndarray, cx: np.ndarray,
             r: np.ndarray) -> bool:
    """True if the new circles (cy, cx, r) overlap none of ``circles[:n]``.

    ``circles`` is float64 (capacity, 3) rows of (y, x, radius + margin).
    """
    if n == 0:
        return True
    c = circles[:n]
    d2 = (c[:, 0, None] - cy[None]) ** 2 + (c[:, 1, None] - cx[None]) ** 2
    return bool(np.all(d2 >= (c[:, 2, None] + r[None]) ** 2))


# ---------------------------------------------------------------------------
# Object renderers (each writes material, label and offset into the canvas)
# ---------------------------------------------------------------------------

def _draw_vessel(cv: _Canvas, rng: np.random.Generator, s: _Shape) -> None:
    """Blood vessel: endothelial wall with nuclear bulges, lumen, maybe an RBC."""
    sl = _bbox(cv.label.shape, s.cy, s.cx, s.bound)
    if sl is None:
        return
    rho, phi = _shape_rho(s, sl)
    won = _claim(cv, sl, rho)
    r_mean = np.sqrt(s.a * s.b)
    wall = rng.uniform(0.12, 0.25) * r_mean + rng.uniform(2.0, 4.0)
    for _ in range(rng.integers(1, 4)):  # endothelial nuclei bulge into the lumen
        ang = rng.uniform(-np.pi, np.pi)
        wall = wall + rng.uniform(0.08, 0.22) * r_mean * np.exp(
            -(_wrap(phi - ang) / rng.uniform(0.25, 0.45)) ** 2)
    lumen = won & (rho < 1.0 - wall / r_mean)
    mat, lab = cv.material[sl], cv.label[sl]
    mat[won] = _M_ENDO
    mat[won & (rho > 1.0 - 1.5 / r_mean)] = _M_MEMBRANE  # basal lamina
    mat[lumen] = _M_LUMEN
    lab[won] = _VESSEL
    cv.offset[sl][won] = rng.normal(0.0, 0.03)
    if rng.random() < 0.6:  # a red blood cell in the lumen
        r_lum = max(2.0, r_mean - float(np.mean(wall)))
        ang = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(0, 0.35) * r_lum
        rbc = _random_shape(rng, s.cy + off * np.sin(ang), s.cx + off * np.cos(ang),
                            rng.uniform(0.4, 0.65) * r_lum, 1.6, 0.05)
        rho_rbc, _ = _shape_rho(rbc, sl)
        mat[lumen & (rho_rbc < 1.0)] = _M_RBC


def _draw_remak(cv: _Canvas, rng: np.random.Generator, s: _Shape) -> None:
    """Remak bundle: Schwann cytoplasm (background) holding small pale axons."""
    sl = _bbox(cv.label.shape, s.cy, s.cx, s.bound)
    if sl is None:
        return
    rho, _ = _shape_rho(s, sl)
    won = _claim(cv, sl, rho)
    mat, lab = cv.material[sl], cv.label[sl]
    mat[won] = _M_REMAK
    mat[won & (rho > 1.0 - 1.5 / np.sqrt(s.a * s.b))] = _M_MEMBRANE  # basal lamina
    lab[won] = _BG
    cv.offset[sl][won] = rng.normal(0.0, 0.02)
    # Pack profiles inside the bundle; the first one sits at the centre.
    n_try = 300
    radii = np.sort(rng.uniform(3.0, 8.0, n_try))[::-1]
    radii[0] = min(5.0, 0.6 * s.b)
    c, sn = np.cos(s.theta), np.sin(s.theta)
    placed = np.zeros((n_try, 3))
    n = 0
    for i in range(n_try):
        r = radii[i]
        if i == 0:
            py, px = s.cy, s.cx
        else:
            t, rr = rng.uniform(0, 2 * np.pi), np.sqrt(rng.random())
            u = rr * np.cos(t) * max(0.0, s.a - r - 2.0)
            v = rr * np.sin(t) * max(0.0, s.b - r - 2.0)
            py, px = s.cy + u * sn + v * c, s.cx + u * c - v * sn
        if not _pack_ok(placed, n, np.array([py]), np.array([px]), np.array([r + 0.8])):
            continue
        placed[n] = (py, px, r)
        n += 1
        p = _random_shape(rng, py, px, r, 1.3, 0.04, n_harm=2)
        rho_p, _ = _shape_rho(p, sl)
        inside = won & (rho_p < 1.0)
        mat[inside] = _M_MEMBRANE
        mat[inside & (rho_p < 1.0 - 1.1 / r)] = _M_UNMY
        lab[inside] = _UNMY
        cv.offset[sl][inside] = rng.normal(0.0, 0.02)


def _draw_fiber(cv: _Canvas, rng: np.random.Generator, s: _Shape) -> None:
    """Myelinated fiber: dark myelin ring around pale axoplasm with mitochondria."""
    sl = _bbox(cv.label.shape, s.cy, s.cx, s.bound)
    if sl is None:
        return
    rho, phi = _shape_rho(s, sl)
    won = _claim(cv, sl, rho)
    r_mean = np.sqrt(s.a * s.b)
    # g-ratio (axon / fiber diameter), myelin at least ~2.5 px thick.
    g = min(float(np.clip(rng.normal(0.66, 0.07), 0.45, 0.82)), 1.0 - 2.5 / r_mean)
    inner = np.full_like(phi, g)
    for k in (2, 3):
        inner += np.float32(g * rng.normal(0, 0.05 / k)) * np.cos(k * phi + rng.uniform(0, 6.3))
    axo = won & (rho < inner)
    mat, lab = cv.material[sl], cv.label[sl]
    mat[won] = _M_MYELIN
    mat[axo] = _M_AXO
    lab[won] = _MYEL
    cv.offset[sl][won] = rng.normal(0.0, 0.03)
    # Mitochondria: dark blobs deeper than ~2 px inside the axoplasm.
    mat[axo & (rho < inner - 2.0 / r_mean) & (cv.blob[sl] > 2.3)] = _M_MITO
    if rng.random() < 0.2:  # a myelin split / decompaction over part of the ring
        pos = g + (1.0 - g) * rng.uniform(0.3, 0.7)
        arc = rng.uniform(0.4, 1.5)
        band = (np.abs(rho - pos) < 0.6 / r_mean) & (np.abs(_wrap(phi - rng.uniform(-3, 3))) < arc)
        mat[won & ~axo & band] = _M_SPLIT


def _draw_nucleus(cv: _Canvas, rng: np.random.Generator, host: _Shape, ang: float,
                  half_len: float, half_thick: float, gap: float) -> None:
    """Schwann nucleus: a crescent hugging ``host`` outside its boundary at angle
    ``ang``, with a thin cytoplasm rim; chromatin with rim heterochromatin."""
    r_host = np.sqrt(host.a * host.b)
    sl = _bbox(cv.label.shape, host.cy, host.cx, host.bound + gap + 3 * half_thick + 3)
    if sl is None:
        return
    rho_h, phi_h = _shape_rho(host, sl)
    u = (rho_h - 1.0) * r_host  # ~ pixels outside the host boundary
    s = _wrap(phi_h - ang) * r_host  # ~ arc length along the host
    rho_n = np.sqrt((s / half_len) ** 2 + ((u - gap - half_thick) / half_thick) ** 2)
    rho_t = rho_n / 1.25  # cytoplasm rim out to rho_n = 1.25
    rho_t[rho_h < 1.0] = np.inf  # never eat into the host
    won = _claim(cv, sl, rho_t)
    nuc = won & (rho_n < 1.0)
    blob = cv.blob[sl]
    hetero = nuc & (((rho_n > 0.7) & (blob > -0.8)) | (blob > 0.9))
    mat, lab = cv.material[sl], cv.label[sl]
    mat[won] = _M_SCYTO
    mat[nuc] = _M_NUC
    mat[hetero] = _M_HETERO
    lab[won] = _SCHWANN
    cv.offset[sl][won] = rng.normal(0.0, 0.02)


# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------

def _nucleus_params(rng: np.random.Generator, r_host: float) -> tuple[float, float, float, float]:
    """(angle, half arc length, half thickness, gap) of a Schwann nucleus."""
    half_thick = rng.uniform(6.0, 11.0)
    half_len = min(rng.uniform(2.0, 3.8) * half_thick, 1.3 * r_host)
    return rng.uniform(-np.pi, np.pi), half_len, half_thick, rng.uniform(0.5, 2.0)


def _nucleus_circles(s: _Shape, ang: float, half_len: float, half_thick: float,
                     gap: float) -> np.ndarray:
    """Three circles (y, x, r) covering a nucleus crescent, for packing."""
    r_host = np.sqrt(s.a * s.b)
    phi = ang + np.array([-0.6, 0.0, 0.6]) * half_len / r_host
    u, v = s.a * np.cos(phi), s.b * np.sin(phi)  # boundary points, shape frame
    scale = 1.0 + (gap + half_thick) / np.hypot(u, v)
    u, v = u * scale, v * scale
    c, sn = np.cos(s.theta), np.sin(s.theta)
    return np.stack([s.cy + u * sn + v * c, s.cx + u * c - v * sn,
                     np.full(3, half_thick + 0.45 * half_len)], axis=1)


def _layout_and_draw(cv: _Canvas, rng: np.random.Generator) -> None:
    """Place vessels, Remak bundles, fibers and Schwann nuclei without overlap
    (greedy random packing of bounding circles) and draw them."""
    h, w = cv.label.shape
    area = h * w / 1024.0 ** 2
    short = min(h, w)
    n_cand = int(np.ceil(8.0 * h * w / (np.pi * 18.0 ** 2)))  # fiber candidates
    circles = np.zeros((4 * n_cand + 400, 3))  # (y, x, radius) of placed circles
    n = 0

    def place(cy, cx, r, extra=None) -> bool:
        nonlocal n
        ys, xs, rs = [cy], [cx], [r]
        if extra is not None:
            ys += list(extra[:, 0]); xs += list(extra[:, 1]); rs += list(extra[:, 2])
        ys, xs, rs = np.array(ys), np.array(xs), np.array(rs)
        if not _pack_ok(circles, n, ys, xs, rs):
            return False
        k = len(ys)
        if n + k > len(circles):
            return False
        circles[n:n + k] = np.stack([ys, xs, rs], axis=1)
        n += k
        return True

    def inside(r):  # a centre that keeps a circle of radius r inside the image
        r = min(r, short / 2 - 1)
        return rng.uniform(r, h - r), rng.uniform(r, w - r)

    # 1) Blood vessels: the first one always fully inside.
    for i in range(1 + rng.poisson(0.6 * area)):
        r = min(rng.uniform(35.0, 75.0), 0.16 * short)
        for _ in range(50):
            cy, cx = inside(r) if i == 0 else (rng.uniform(0, h), rng.uniform(0, w))
            s = _random_shape(rng, cy, cx, r, 1.5, 0.04)
            if place(cy, cx, s.bound + 2.0):
                _draw_vessel(cv, rng, s)
                break

    # 2) Remak bundles: the first one always fully inside.
    for i in range(1 + rng.poisson(4.0 * area)):
        r = min(rng.uniform(24.0, 55.0), 0.12 * short)
        for _ in range(50):
            cy, cx = inside(r) if i == 0 else (rng.uniform(0, h), rng.uniform(0, w))
            s = _random_shape(rng, cy, cx, r, 1.5, 0.06)
            nuc = _nucleus_params(rng, r) if rng.random() < 0.3 else None
            if place(cy, cx, s.bound + 1.5, None if nuc is None else _nucleus_circles(s, *nuc)):
                _draw_remak(cv, rng, s)
                if nuc is not None:
                    _draw_nucleus(cv, rng, s, *nuc)
                break

    # 3) Myelinated fibers, largest first; ~12% carry a Schwann nucleus, and
    #    the first one always does (placed fully inside the image).
    large = rng.random(n_cand) < 0.35
    radii = np.where(large, rng.lognormal(np.log(30.0), 0.22, n_cand),
                     rng.lognormal(np.log(15.0), 0.28, n_cand))
    radii = np.sort(np.clip(radii, 6.0, 0.2 * short))[::-1]
    first = True
    for r in radii:
        with_nuc = first or rng.random() < 0.12
        for _ in range(200 if first else 1):
            if first:
                r = min(r, 22.0)
                cy, cx = inside(1.2 * r + 24.0)
            else:
                cy, cx = rng.uniform(-0.3 * r, h + 0.3 * r), rng.uniform(-0.3 * r, w + 0.3 * r)
            s = _random_shape(rng, cy, cx, r, 1.6, 0.05)
            gap = rng.exponential(1.0)
            r_pack = 0.5 * (s.a + s.b) * 0.97 + gap
            nuc = _nucleus_params(rng, r) if with_nuc else None
            extra = _nucleus_circles(s, *nuc) if with_nuc else None
            if place(cy, cx, r_pack, extra):
                _draw_fiber(cv, rng, s)
                if with_nuc:
                    _draw_nucleus(cv, rng, s, *nuc)
                first = False
                break
        if first:  # could not place the guaranteed nucleus (tiny image): give up
            first = False


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma,
                  ) -> np.ndarray:
    """White noise filtered by a Gaussian of ``sigma`` (pixels, scalar or per
    axis), scaled to unit standard deviation; float32 of ``shape``."""
    f = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return f / max(float(f.std()), 1e-6)


def _low_freq(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
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


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int or a pair; errors name ``size``."""
    hw = (size, size) if np.isscalar(size) else tuple(size)
    if len(hw) != 2 or any(int(v) != v or int(v) < 16 for v in hw):
        raise UserInputError(f"size: expected an integer >= 16 or a (height, width) pair, got {size!r}")
    return int(hw[0]), int(hw[1])


def generate_tem_image(size: int | tuple[int, int] = 1024, seed: int = 0,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic nerve TEM image and its label.

    Args:
        size: ``N`` for an N x N image or ``(height, width)``; at least 16.
            Objects have fixed sizes in pixels (a 1024 image shows ~250
            myelinated fibers); any image of size >= 256 contains all five
            classes (one vessel, one Remak bundle and one Schwann nucleus are
            always placed fully inside).
        seed: seed of ``np.random.default_rng``; same seed, same arrays.

    Returns:
        ``(image, label)``: image uint16 (H, W) with values roughly in
        [1000, 55000] (myelin darkest); label uint8 (H, W) with values in
        :data:`TEM_CLASS_VALUES`.
    """
    hw = _as_hw(size)
    rng = np.random.default_rng(seed)
    cv = _Canvas(
        material=np.zeros(hw, np.int8),
        label=np.zeros(hw, np.uint8),
        rho=np.full(hw, np.inf, np.float32),
        offset=np.zeros(hw, np.float32),
        blob=_smooth_noise(rng, hw, 1.8),
    )
    _layout_and_draw(cv, rng)

    # Texture fields, combined per material.
    fine = _smooth_noise(rng, hw, 0.7)
    streak_a = _smooth_noise(rng, hw, (0.6, 4.0))
    streak_b = _smooth_noise(rng, hw, (4.0, 0.6))
    mix = 1.0 / (1.0 + np.exp(-3.0 * _low_freq(rng, hw, 200.0)))
    collagen = mix * streak_a + (1.0 - mix) * streak_b
    low = _low_freq(rng, hw, 120.0)
    base = _BASE + rng.normal(0.0, 0.02, _BASE.shape).astype(np.float32)  # contrast jitter
    m = cv.material
    x = (base[m] + _AMP_FINE[m] * fine + _AMP_BLOB[m] * cv.blob
         + _AMP_COLL[m] * collagen + _AMP_LOW[m] * low + cv.offset)

    # Microscope: uneven illumination, PSF blur, shot + read noise, camera range.
    gain = 1.0 + rng.uniform(0.05, 0.12) * _low_freq(rng, hw, 400.0)
    x = ndi.gaussian_filter(np.clip(x * gain, 0.0, None), rng.uniform(0.8, 1.4))
    photons = rng.uniform(150.0, 400.0)
    x = rng.poisson(x * photons).astype(np.float32) / np.float32(photons)
    x += rng.normal(0.0, 0.008, hw).astype(np.float32)
    lo, hi = rng.uniform(1500.0, 3500.0), rng.uniform(38000.0, 48000.0)
    image = np.clip(lo + x * (hi - lo), 0, 65535).astype(np.uint16)
    return image, cv.label


def _image_seed(seed: int, split: int, index: int) -> int:
    """Seed of image ``index`` of split 0 (train) / 1 (test), independent of
    how many images there are."""
    return int(np.random.SeedSequence([seed, split, index]).generate_state(1)[0])


def write_tem_dataset(root: str | Path, n_train: int = 12, n_test: int = 2,
                      size: int = 1024, seed: int = 0) -> dict:
    """Write the synthetic `tem` dataset under ``root``.

    Layout: ``root/train/raw_XX.tif`` + ``root/train/label_XX.tif`` and the same
    under ``root/test/``; XX is zero-padded to 2 digits (3 from 100 images of a
    split on). Raw images are uncompressed uint16, labels zlib-compressed uint8.
    Image i of the train split uses seed ``SeedSequence([seed, 0, i])`` and of
    the test split ``SeedSequence([seed, 1, i])``, so adding images never
    changes the earlier ones. Every file is written atomically.

    Returns:
        ``{"root", "n_train", "n_test", "size": [H, W], "seed", "files"}``.
    """
    if n_train < 0 or n_test < 0:
        raise UserInputError(f"n_train/n_test must be >= 0, got {n_train}/{n_test}")
    hw = _as_hw(size)
    root = Path(root)
    files = []
    for split_id, (split, count) in enumerate((("train", n_train), ("test", n_test))):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        digits = 3 if count >= 100 else 2
        for i in range(count):
            image, label = generate_tem_image(hw, _image_seed(seed, split_id, i))
            raw_path = folder / f"raw_{i:0{digits}d}.tif"
            label_path = folder / f"label_{i:0{digits}d}.tif"
            write_tiff(raw_path, image, compression=None)
            write_tiff(label_path, label)
            files += [str(raw_path), str(label_path)]
    return {"root": str(root), "n_train": n_train, "n_test": n_test,
            "size": list(hw), "seed": seed, "files": len(files)}


# ---------------------------------------------------------------------------
# The naive baseline: one global Otsu threshold per image
# ---------------------------------------------------------------------------

def otsu_threshold(image: np.ndarray, bins: int = 1024) -> float:
    """Otsu's threshold of ``image`` (any shape, any numeric dtype).

    Histogram of ``bins`` equal bins over [min, max]; picks the split that
    maximizes the between-class variance w0 * w1 * (mu0 - mu1)^2; where the
    maximum is a plateau (empty bins between two modes) it takes the plateau's
    middle. Returns the threshold t such that the dark class is
    ``image < t`` (t is the lower edge of the first bright bin). A constant
    image returns its value (everything is bright).
    """
    x = np.asarray(image, dtype=np.float64).ravel()
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(x, bins=bins, range=(lo, hi))
    p = hist / hist.sum()
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)[:-1]  # dark class = bins 0..k, k = 0..bins-2
    mu0_sum = np.cumsum(p * centers)[:-1]
    mu_t = float(np.sum(p * centers))
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * w0 - mu0_sum) ** 2 / (w0 * w1)
    between[(w0 <= 0) | (w1 <= 0)] = -1.0
    best = int(np.argmax(between))
    on_top = between >= between[best] * (1.0 - 1e-9)
    off = np.flatnonzero(~on_top)  # the plateau is the run of on_top around best
    lo_k = int(off[off < best].max()) + 1 if np.any(off < best) else 0
    hi_k = int(off[off > best].min()) - 1 if np.any(off > best) else len(on_top) - 1
    return float(edges[(lo_k + hi_k) // 2 + 1])


def dice_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice 2|P & T| / (|P| + |T|) of two boolean arrays; 1.0 if both empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    denom = int(pred.sum()) + int(target.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(pred, target).sum()) / denom


def otsu_baseline(images: Iterable[np.ndarray], labels: Iterable[np.ndarray],
                  class_values: Sequence[int] = TEM_CLASS_VALUES,
                  class_names: Sequence[str] | None = None) -> dict[str, float]:
    """Per-class Dice of the most generous single global threshold.

    For each image: t = :func:`otsu_threshold` (1024 bins), dark = image < t,
    bright = the rest. For each class c present in that image's label, the
    score is max(Dice(dark, label == c), Dice(bright, label == c)), i.e. the
    better side is granted to every class separately (an upper bound on what
    one global threshold can do). Scores are averaged over the images that
    contain c; a class absent from every image gets NaN.

    Args:
        images, labels: equally long iterables of 2-D arrays of equal shapes.
        class_values: label values, one per class.
        class_names: names for the result keys; default :data:`TEM_CLASS_NAMES`
            for the TEM values, else ``"class_<value>"``.

    Returns:
        ``{class_name: mean Dice}`` in ``class_values`` order.
    """
    values = tuple(int(v) for v in class_values)
    if class_names is None:
        class_names = (TEM_CLASS_NAMES if values == TEM_CLASS_VALUES
                       else tuple(f"class_{v}" for v in values))
    scores: list[list[float]] = [[] for _ in values]
    for image, label in zip(images, labels, strict=True):
        image, label = np.asarray(image), np.asarray(label)
        if image.shape != label.shape:
            raise ValueError(f"image shape {image.shape} != label shape {label.shape}")
        dark = image < otsu_threshold(image)
        for i, v in enumerate(values):
            target = label == v
            if target.any():
                scores[i].append(max(dice_score(dark, target), dice_score(~dark, target)))
    return {name: (float(np.mean(s)) if s else float("nan"))
            for name, s in zip(class_names, scores)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the synthetic `tem` dataset to ``--out``."""
    parser = argparse.ArgumentParser(
        prog="python -m unet_tf.synthetic",
        description="Write the synthetic nerve-TEM demo dataset (tem layout).")
    parser.add_argument("--out", required=True, help="dataset folder to write (train/, test/)")
    parser.add_argument("--n-train", type=int, default=12, help="training images (default: 12)")
    parser.add_argument("--n-test", type=int, default=2, help="test images (default: 2)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default: 1024)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    args = parser.parse_args(argv)
    try:
        info = write_tem_dataset(args.out, args.n_train, args.n_test, args.size, args.seed)
    except UserInputError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {info['n_train']} train + {info['n_test']} test synthetic TEM images "
          f"({info['size'][0]}x{info['size'][1]}, seed {info['seed']}) to {Path(info['root']).resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
