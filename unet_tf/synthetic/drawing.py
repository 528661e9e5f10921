"""Object renderers and the layout of the synthetic TEM image.

Each renderer draws one object (vessel, Remak bundle with its unmyelinated
axons, myelinated fibre, Schwann nucleus) into the :class:`~.shapes.Canvas`:
material, class value and instance id. :func:`layout_and_draw` places the
objects by greedy random packing of bounding circles. Every random number
comes from the one generator passed in, in a fixed order: the same seed gives
the same image (changing the order of the calls changes every image).
"""

from __future__ import annotations

import numpy as np

from unet_tf.synthetic.shapes import (
    BG,
    M_AXO,
    M_ENDO,
    M_HETERO,
    M_LUMEN,
    M_MEMBRANE,
    M_MITO,
    M_MYELIN,
    M_NUC,
    M_RBC,
    M_REMAK,
    M_SCYTO,
    M_SPLIT,
    M_UNMY,
    MYEL,
    SCHWANN,
    UNMY,
    VESSEL,
    Canvas,
    Shape,
    bbox,
    claim,
    pack_ok,
    paint,
    random_shape,
    shape_rho,
    wrap,
)

# === Object renderers (each writes material, label, instance and offset into the canvas) ===


def draw_vessel(cv: Canvas, rng: np.random.Generator, s: Shape) -> None:
    """Blood vessel: endothelial wall with nuclear bulges, lumen, maybe an RBC."""
    sl = bbox(cv.label.shape, s.cy, s.cx, s.bound)
    if sl is None:
        return
    rho, phi = shape_rho(s, sl)
    won = claim(cv, sl, rho)
    r_mean = np.sqrt(s.a * s.b)
    wall = rng.uniform(0.12, 0.25) * r_mean + rng.uniform(2.0, 4.0)
    for _ in range(rng.integers(1, 4)):  # endothelial nuclei bulge into the lumen
        ang = rng.uniform(-np.pi, np.pi)
        wall = wall + rng.uniform(0.08, 0.22) * r_mean * np.exp(-((wrap(phi - ang) / rng.uniform(0.25, 0.45)) ** 2))
    lumen = won & (rho < 1.0 - wall / r_mean)
    mat = cv.material[sl]
    mat[won] = M_ENDO
    mat[won & (rho > 1.0 - 1.5 / r_mean)] = M_MEMBRANE  # basal lamina
    mat[lumen] = M_LUMEN
    paint(cv, sl, won, VESSEL)
    cv.offset[sl][won] = rng.normal(0.0, 0.03)
    if rng.random() < 0.6:  # a red blood cell in the lumen
        r_lum = max(2.0, r_mean - float(np.mean(wall)))
        ang = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(0, 0.35) * r_lum
        rbc = random_shape(
            rng, s.cy + off * np.sin(ang), s.cx + off * np.cos(ang), rng.uniform(0.4, 0.65) * r_lum, 1.6, 0.05
        )
        rho_rbc, _ = shape_rho(rbc, sl)
        mat[lumen & (rho_rbc < 1.0)] = M_RBC


def draw_remak(cv: Canvas, rng: np.random.Generator, s: Shape) -> None:
    """Remak bundle: Schwann cytoplasm (background) holding small pale axons, one instance each."""
    sl = bbox(cv.label.shape, s.cy, s.cx, s.bound)
    if sl is None:
        return
    rho, _ = shape_rho(s, sl)
    won = claim(cv, sl, rho)
    mat = cv.material[sl]
    mat[won] = M_REMAK
    mat[won & (rho > 1.0 - 1.5 / np.sqrt(s.a * s.b))] = M_MEMBRANE  # basal lamina
    paint(cv, sl, won, BG)
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
        if not pack_ok(placed, n, np.array([py]), np.array([px]), np.array([r + 0.8])):
            continue
        placed[n] = (py, px, r)
        n += 1
        p = random_shape(rng, py, px, r, 1.3, 0.04, n_harm=2)
        rho_p, _ = shape_rho(p, sl)
        inside = won & (rho_p < 1.0)
        mat[inside] = M_MEMBRANE
        mat[inside & (rho_p < 1.0 - 1.1 / r)] = M_UNMY
        paint(cv, sl, inside, UNMY)
        cv.offset[sl][inside] = rng.normal(0.0, 0.02)


def draw_fiber(cv: Canvas, rng: np.random.Generator, s: Shape) -> None:
    """Myelinated fiber: dark myelin ring around pale axoplasm with mitochondria (one instance)."""
    sl = bbox(cv.label.shape, s.cy, s.cx, s.bound)
    if sl is None:
        return
    rho, phi = shape_rho(s, sl)
    won = claim(cv, sl, rho)
    r_mean = np.sqrt(s.a * s.b)
    # g-ratio (axon / fiber diameter), myelin at least ~2.5 px thick.
    g = min(float(np.clip(rng.normal(0.66, 0.07), 0.45, 0.82)), 1.0 - 2.5 / r_mean)
    inner = np.full_like(phi, g)
    for k in (2, 3):
        inner += np.float32(g * rng.normal(0, 0.05 / k)) * np.cos(k * phi + rng.uniform(0, 6.3))
    axo = won & (rho < inner)
    mat = cv.material[sl]
    mat[won] = M_MYELIN
    mat[axo] = M_AXO
    paint(cv, sl, won, MYEL)
    cv.offset[sl][won] = rng.normal(0.0, 0.03)
    # Mitochondria: dark blobs deeper than ~2 px inside the axoplasm.
    mat[axo & (rho < inner - 2.0 / r_mean) & (cv.blob[sl] > 2.3)] = M_MITO
    if rng.random() < 0.2:  # a myelin split / decompaction over part of the ring
        pos = g + (1.0 - g) * rng.uniform(0.3, 0.7)
        arc = rng.uniform(0.4, 1.5)
        band = (np.abs(rho - pos) < 0.6 / r_mean) & (np.abs(wrap(phi - rng.uniform(-3, 3))) < arc)
        mat[won & ~axo & band] = M_SPLIT


def draw_nucleus(
    cv: Canvas, rng: np.random.Generator, host: Shape, ang: float, half_len: float, half_thick: float, gap: float
) -> None:
    """Schwann nucleus: a crescent hugging ``host`` outside its boundary at angle
    ``ang``, with a thin cytoplasm rim; chromatin with rim heterochromatin (one instance)."""
    r_host = np.sqrt(host.a * host.b)
    sl = bbox(cv.label.shape, host.cy, host.cx, host.bound + gap + 3 * half_thick + 3)
    if sl is None:
        return
    rho_h, phi_h = shape_rho(host, sl)
    u = (rho_h - 1.0) * r_host  # ~ pixels outside the host boundary
    s = wrap(phi_h - ang) * r_host  # ~ arc length along the host
    rho_n = np.sqrt((s / half_len) ** 2 + ((u - gap - half_thick) / half_thick) ** 2)
    rho_t = rho_n / 1.25  # cytoplasm rim out to rho_n = 1.25
    rho_t[rho_h < 1.0] = np.inf  # never eat into the host
    won = claim(cv, sl, rho_t)
    nuc = won & (rho_n < 1.0)
    blob = cv.blob[sl]
    hetero = nuc & (((rho_n > 0.7) & (blob > -0.8)) | (blob > 0.9))
    mat = cv.material[sl]
    mat[won] = M_SCYTO
    mat[nuc] = M_NUC
    mat[hetero] = M_HETERO
    paint(cv, sl, won, SCHWANN)
    cv.offset[sl][won] = rng.normal(0.0, 0.02)


# === Layout ===


def nucleus_params(rng: np.random.Generator, r_host: float) -> tuple[float, float, float, float]:
    """(angle, half arc length, half thickness, gap) of a Schwann nucleus."""
    half_thick = rng.uniform(6.0, 11.0)
    half_len = min(rng.uniform(2.0, 3.8) * half_thick, 1.3 * r_host)
    return rng.uniform(-np.pi, np.pi), half_len, half_thick, rng.uniform(0.5, 2.0)


def nucleus_circles(s: Shape, ang: float, half_len: float, half_thick: float, gap: float) -> np.ndarray:
    """Three circles (y, x, r) covering a nucleus crescent, for packing."""
    r_host = np.sqrt(s.a * s.b)
    phi = ang + np.array([-0.6, 0.0, 0.6]) * half_len / r_host
    u, v = s.a * np.cos(phi), s.b * np.sin(phi)  # boundary points, shape frame
    scale = 1.0 + (gap + half_thick) / np.hypot(u, v)
    u, v = u * scale, v * scale
    c, sn = np.cos(s.theta), np.sin(s.theta)
    return np.stack([s.cy + u * sn + v * c, s.cx + u * c - v * sn, np.full(3, half_thick + 0.45 * half_len)], axis=1)


class Packer:
    """Greedy random packing: placed bounding circles, and random centres inside the image.

    Args:
        rng: np.random.Generator, the image's generator (``inside`` draws from it).
        hw: (height, width) of the image.
        capacity: int, most circles that can be placed.
    """

    def __init__(self, rng: np.random.Generator, hw: tuple[int, int], capacity: int):
        self.rng, (self.h, self.w) = rng, hw
        self.short = min(hw)
        self.circles = np.zeros((capacity, 3))  # (y, x, radius) of placed circles
        self.n = 0

    def place(self, cy: float, cx: float, r: float, extra: np.ndarray | None = None) -> bool:
        """Place the circle (cy, cx, r) and the (k, 3) circles ``extra`` if none overlaps a placed one."""
        ys, xs, rs = [cy], [cx], [r]
        if extra is not None:
            ys += list(extra[:, 0])
            xs += list(extra[:, 1])
            rs += list(extra[:, 2])
        ys, xs, rs = np.array(ys), np.array(xs), np.array(rs)
        if not pack_ok(self.circles, self.n, ys, xs, rs):
            return False
        k = len(ys)
        if self.n + k > len(self.circles):
            return False
        self.circles[self.n : self.n + k] = np.stack([ys, xs, rs], axis=1)
        self.n += k
        return True

    def inside(self, r: float) -> tuple[float, float]:
        """A random centre that keeps a circle of radius r inside the image."""
        r = min(r, self.short / 2 - 1)
        return self.rng.uniform(r, self.h - r), self.rng.uniform(r, self.w - r)


def layout_and_draw(cv: Canvas, rng: np.random.Generator) -> int:
    """Place vessels, Remak bundles, fibers and Schwann nuclei without overlap and draw them.

    Returns:
        int, the number of myelinated fibres placed (each one instance of the canvas).
    """
    h, w = cv.label.shape
    area = h * w / 1024.0**2
    n_cand = int(np.ceil(8.0 * h * w / (np.pi * 18.0**2)))  # fiber candidates
    packer = Packer(rng, (h, w), 4 * n_cand + 400)
    place_vessels(cv, rng, packer, area)
    place_remak_bundles(cv, rng, packer, area)
    return place_fibres(cv, rng, packer, n_cand)


def place_vessels(cv: Canvas, rng: np.random.Generator, packer: Packer, area: float) -> None:
    """Blood vessels (about 0.6 per megapixel): the first one always fully inside."""
    h, w = packer.h, packer.w
    for i in range(1 + rng.poisson(0.6 * area)):
        r = min(rng.uniform(35.0, 75.0), 0.16 * packer.short)
        for _ in range(50):
            cy, cx = packer.inside(r) if i == 0 else (rng.uniform(0, h), rng.uniform(0, w))
            s = random_shape(rng, cy, cx, r, 1.5, 0.04)
            if packer.place(cy, cx, s.bound + 2.0):
                draw_vessel(cv, rng, s)
                break


def place_remak_bundles(cv: Canvas, rng: np.random.Generator, packer: Packer, area: float) -> None:
    """Remak bundles (about 4 per megapixel, 30 % with a nucleus): the first one always fully inside."""
    h, w = packer.h, packer.w
    for i in range(1 + rng.poisson(4.0 * area)):
        r = min(rng.uniform(24.0, 55.0), 0.12 * packer.short)
        for _ in range(50):
            cy, cx = packer.inside(r) if i == 0 else (rng.uniform(0, h), rng.uniform(0, w))
            s = random_shape(rng, cy, cx, r, 1.5, 0.06)
            nuc = nucleus_params(rng, r) if rng.random() < 0.3 else None
            if packer.place(cy, cx, s.bound + 1.5, None if nuc is None else nucleus_circles(s, *nuc)):
                draw_remak(cv, rng, s)
                if nuc is not None:
                    draw_nucleus(cv, rng, s, *nuc)
                break


def place_fibres(cv: Canvas, rng: np.random.Generator, packer: Packer, n_cand: int) -> int:
    """Myelinated fibers, largest first; ~12% carry a Schwann nucleus, and the first one
    always does (placed fully inside the image). Returns the number of fibres placed."""
    h, w = packer.h, packer.w
    large = rng.random(n_cand) < 0.35
    radii = np.where(large, rng.lognormal(np.log(30.0), 0.22, n_cand), rng.lognormal(np.log(15.0), 0.28, n_cand))
    radii = np.sort(np.clip(radii, 6.0, 0.2 * packer.short))[::-1]
    first, placed = True, 0
    for r in radii:
        with_nuc = first or rng.random() < 0.12
        for _ in range(200 if first else 1):
            if first:
                r = min(r, 22.0)
                cy, cx = packer.inside(1.2 * r + 24.0)
            else:
                cy, cx = rng.uniform(-0.3 * r, h + 0.3 * r), rng.uniform(-0.3 * r, w + 0.3 * r)
            s = random_shape(rng, cy, cx, r, 1.6, 0.05)
            gap = rng.exponential(1.0)
            r_pack = 0.5 * (s.a + s.b) * 0.97 + gap
            nuc = nucleus_params(rng, r) if with_nuc else None
            extra = nucleus_circles(s, *nuc) if with_nuc else None
            if packer.place(cy, cx, r_pack, extra):
                draw_fiber(cv, rng, s)
                placed += 1
                if with_nuc:
                    draw_nucleus(cv, rng, s, *nuc)
                first = False
                break
        if first:  # could not place the guaranteed nucleus (tiny image): give up
            first = False
    return placed
