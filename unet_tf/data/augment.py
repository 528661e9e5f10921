"""On-graph augmentation of one (image, mask[, weight]) example, reproducible from a seed.

All geometry (elastic field, small affine, rot90 and flips) is composed into ONE
map of sampling coordinates, so the image is resampled once (bilinear) and the
mask once (nearest: no new label value can appear, so the ignore id 255 stays
exact), both through the same map; a per-pixel weight map, when there is one,
is sampled through the same map by nearest neighbour too (see
:func:`sample_patch` for why).
Coordinates outside the source are reflected back into it (mirror without
repeating the edge pixel, like ``np.pad(mode="reflect")``).

Coordinates are ``(row, col)`` in source pixel units. For an output pixel
``p = (i, j)`` of a ``P x P`` patch with centre ``c = (P - 1) / 2``::

    source(p) = centre + translation + M @ (p - c) + displacement(p)
    M = R(theta) / scale @ D        (D: rot90 / flip matrix, entries 0 or +-1)

Everything here is pure TensorFlow (usable inside ``tf.data`` ``map`` with
``num_parallel_calls``); randomness comes only from ``tf.random.stateless_*``
with an explicit ``[2]`` integer seed.
"""

from __future__ import annotations

import math

import tensorflow as tf

from unet_tf.config import AugmentConfig

# === Coordinates and warps ===


def sampling_coordinates(
    out_size: int | tf.Tensor, centre: tf.Tensor, matrix: tf.Tensor | None = None, displacement: tf.Tensor | None = None
) -> tf.Tensor:
    """Source coordinates of every output pixel of a square patch.

    Args:
        out_size: ``P``, side of the output patch.
        centre: float32 ``[2]`` source ``(row, col)`` that the patch centre maps to.
        matrix: float32 ``[2, 2]`` linear part ``M`` (identity if None).
        displacement: float32 ``[P, P, 2]`` added in source pixels (none if None).

    Returns:
        float32 ``[P, P, 2]`` source ``(row, col)``; with identity matrix, no
        displacement and ``centre = origin + (P - 1) / 2`` these are exactly the
        integer pixel positions ``origin + (i, j)``.
    """
    size = tf.cast(out_size, tf.float32)
    offsets = tf.range(size, dtype=tf.float32) - (size - 1.0) / 2.0
    u, v = tf.meshgrid(offsets, offsets, indexing="ij")  # row, col offsets
    centre = tf.cast(centre, tf.float32)
    if matrix is None:
        rows, cols = u, v
    else:
        m = tf.cast(matrix, tf.float32)
        rows = m[0, 0] * u + m[0, 1] * v
        cols = m[1, 0] * u + m[1, 1] * v
    coords = tf.stack([rows + centre[0], cols + centre[1]], axis=-1)
    if displacement is not None:
        coords = coords + displacement
    return coords


def reflect_coordinates(coords: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Mirror float32 ``[..., 2]`` coordinates into ``[0, H-1] x [0, W-1]``.

    Reflection about the edge pixel centres (edge not repeated), any distance out.
    """
    limits = tf.cast(tf.stack([height, width]), tf.float32) - 1.0
    period = tf.maximum(2.0 * limits, 1.0)  # a 1-px side maps everything to 0
    c = tf.math.floormod(tf.abs(coords), period)
    c = tf.where(c > limits, period - c, c)
    return tf.clip_by_value(c, 0.0, limits)


def warp_nearest(flat: tf.Tensor, offset: tf.Tensor, width: tf.Tensor, coords: tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour sample of a row-major image stored in a flat tensor.

    Args:
        flat: ``[N]`` any dtype, holding the image at ``flat[offset + r * W + c]``.
        offset, width: int64 scalars.
        coords: float32 ``[P, P, 2]`` already inside the image (see
            :func:`reflect_coordinates`).

    Returns:
        ``[P, P]`` with ``flat``'s dtype; values are copied, never mixed.
    """
    idx = tf.cast(tf.math.floor(coords + 0.5), tf.int64)
    width = tf.cast(width, tf.int64)
    return tf.gather(flat, tf.cast(offset, tf.int64) + idx[..., 0] * width + idx[..., 1])


def warp_bilinear(
    flat: tf.Tensor, offset: tf.Tensor, height: tf.Tensor, width: tf.Tensor, coords: tf.Tensor
) -> tf.Tensor:
    """Bilinear sample (float32 ``[P, P]``) of a float image held in a flat tensor.

    Same arguments as :func:`warp_nearest`; integer coordinates give the pixel
    values exactly.
    """
    h = tf.cast(height, tf.int64)
    w = tf.cast(width, tf.int64)
    base = tf.cast(offset, tf.int64)
    floor = tf.math.floor(coords)
    frac = coords - floor
    r0 = tf.cast(floor[..., 0], tf.int64)
    c0 = tf.cast(floor[..., 1], tf.int64)
    r1 = tf.minimum(r0 + 1, h - 1)
    c1 = tf.minimum(c0 + 1, w - 1)
    fr, fc = frac[..., 0], frac[..., 1]

    def at(r, c):
        return tf.gather(flat, base + r * w + c)

    top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc
    bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc
    return top * (1.0 - fr) + bottom * fr


# === Random parts ===


def dihedral_matrix(k: tf.Tensor, flip_rows: tf.Tensor, flip_cols: tf.Tensor) -> tf.Tensor:
    """float32 ``[2, 2]`` matrix ``D`` of a rot90 / flip (the dihedral group of a square).

    ``k`` in 0..3 counter-clockwise quarter turns (as ``np.rot90``/
    ``tf.image.rot90``); ``flip_rows`` flips axis 0 (up-down), ``flip_cols``
    axis 1 (left-right). Sampling through it gives
    ``np.flip(np.rot90(x, k), axes)``: the rotation first, then the flips.
    """
    quarter = tf.constant([[0.0, 1.0], [-1.0, 0.0]])  # np.rot90(x, 1)
    rot = tf.switch_case(
        tf.cast(k, tf.int32) % 4,
        [lambda: tf.eye(2), lambda: quarter, lambda: quarter @ quarter, lambda: quarter @ quarter @ quarter],
    )
    sr = tf.where(tf.cast(flip_rows, tf.bool), -1.0, 1.0)
    sc = tf.where(tf.cast(flip_cols, tf.bool), -1.0, 1.0)
    return rot @ tf.linalg.diag(tf.stack([sr, sc]))


def gaussian_smooth(field: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur (reflect borders) of a float32 ``[P, P, C]`` field."""
    size = field.shape[0] if field.shape[0] is not None else None
    radius = int(math.ceil(3.0 * sigma))
    if size is not None:
        radius = min(radius, size - 1)
    if sigma <= 0 or radius < 1:
        return field
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / tf.reduce_sum(kernel)
    channels = field.shape[-1]
    out = field[tf.newaxis]
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    out = tf.pad(out, pad, mode="REFLECT")
    k_rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    k_cols = tf.reshape(k_rows, [1, -1, channels, 1])
    out = tf.nn.depthwise_conv2d(out, k_rows, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, k_cols, [1, 1, 1, 1], "VALID")
    return out[0]


def elastic_field(seed: tf.Tensor, out_size: int | tf.Tensor, grid: int, alpha: float, sigma: float) -> tf.Tensor:
    """Smooth random displacement field, float32 ``[P, P, 2]`` in pixels.

    A ``grid x grid`` control grid of N(0, alpha) displacements, bicubically
    upsampled to ``P x P`` and Gaussian-smoothed with ``sigma`` (0: not at all).
    """
    coarse = tf.random.stateless_normal([1, grid, grid, 2], seed, stddev=alpha)
    dense = tf.image.resize(coarse, tf.stack([out_size, out_size]), method="bicubic")[0]
    return gaussian_smooth(dense, sigma)


def signed_gamma(x: tf.Tensor, g: tf.Tensor | float) -> tf.Tensor:
    """Gamma curve ``sign(x) * |x| ** g`` of a float32 tensor (same shape).

    On ``[0, 1]`` (the percentile-normalized range) this is the usual ``x ** g``;
    below 0 it is its odd extension, so values under the low percentile (e.g.
    the darkest membrane pixels) stay negative and in order instead of being
    clipped to 0. Strictly increasing for ``g > 0``; fixes -1, 0 and 1;
    ``g = 1`` is the identity.
    """
    return tf.sign(x) * tf.pow(tf.abs(x), g)


def intensity_jitter(image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Random gamma, contrast, brightness and Gaussian noise on a float32 image.

    In that order: :func:`signed_gamma` ``sign(x) * |x| ** g`` with ``g`` in
    ``[1 - gamma, 1 + gamma]`` (order and sign of every value kept);
    contrast ``(x - mean) * c + mean`` with ``c`` in ``[1 - contrast, 1 + contrast]``;
    ``x + b`` with ``b`` in ``[-brightness, brightness]``; noise with a standard
    deviation drawn in ``[0, noise_std]``. A zero range skips that step. Shape kept.
    """
    s = tf.random.experimental.stateless_split(seed, num=2)
    a = tf.random.stateless_uniform([4], s[0], -1.0, 1.0)
    x = image
    if cfg.gamma > 0:
        x = signed_gamma(x, 1.0 + cfg.gamma * a[0])
    if cfg.contrast > 0:
        mean = tf.reduce_mean(x)
        x = (x - mean) * (1.0 + cfg.contrast * a[1]) + mean
    if cfg.brightness > 0:
        x = x + cfg.brightness * a[2]
    if cfg.noise_std > 0:
        std = cfg.noise_std * (a[3] + 1.0) / 2.0
        x = x + tf.random.stateless_normal(tf.shape(x), s[1], stddev=std)
    return x


def random_geometry(seed: tf.Tensor, cfg: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Draw the geometric part of an augmentation.

    Returns:
        matrix float32 ``[2, 2]`` (``R(theta) / scale @ D``), translation float32
        ``[2]``, ``use_elastic`` bool scalar, ``seed`` ``[2]`` for the elastic field.
    """
    s = tf.random.experimental.stateless_split(seed, num=4)
    u = tf.random.stateless_uniform([2], s[0])
    matrix = tf.eye(2)
    if cfg.flip_rot90:
        bits = tf.random.stateless_uniform([3], s[1], 0, 4, dtype=tf.int32)
        matrix = dihedral_matrix(bits[0], bits[1] % 2, bits[2] % 2)
    translation = tf.zeros([2])
    if cfg.affine_prob > 0:
        a = tf.random.stateless_uniform([4], s[2], -1.0, 1.0)
        use = u[1] < cfg.affine_prob
        theta = tf.where(use, a[0] * cfg.rotation_deg * math.pi / 180.0, 0.0)
        half = (a[1] + 1.0) / 2.0
        scale = tf.where(use, cfg.scale_min + half * (cfg.scale_max - cfg.scale_min), 1.0)
        cos, sin = tf.cos(theta), tf.sin(theta)
        rot = tf.reshape(tf.stack([cos, -sin, sin, cos]), [2, 2]) / scale
        matrix = rot @ matrix
        translation = tf.where(use, a[2:] * cfg.translate_px, translation)
    use_elastic = tf.constant(False)
    if cfg.elastic and cfg.elastic_prob > 0 and cfg.elastic_alpha > 0:
        use_elastic = u[0] < cfg.elastic_prob
    return matrix, translation, use_elastic, s[3]


# === Entry points ===


def sample_patch(
    flat_image: tf.Tensor,
    flat_mask: tf.Tensor,
    flat_weight: tf.Tensor | None,
    offset: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    centre: tf.Tensor,
    seed: tf.Tensor,
    cfg: AugmentConfig | None,
    out_size: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """Cut one (augmented) ``P x P`` patch straight out of a whole image.

    The image, integer mask and optional float32 weight map live row-major at
    ``flat_*[offset : offset + H * W]`` (int64 ``offset``, ``height``,
    ``width``). All three are sampled through ONE coordinate map centred on
    ``centre`` (float32 ``[2]``; ``origin + (P - 1) / 2`` puts an unaugmented
    patch on whole pixels), reflected at the borders: no crop margin or padding.
    The image is resampled bilinearly; mask and weights by nearest neighbour
    from the same source pixel, so every output pixel carries a (class id,
    weight) pair of the source: no id is mixed with another (the ignore id stays
    exact) and a class-dependent weight never bleeds across a label edge.
    ``cfg`` None or disabled: a plain crop (``seed``, ``[2]`` integers, unused).

    Returns:
        image float32 ``[P, P, 1]``, mask ``[P, P, 1]`` with ``flat_mask``'s
        dtype, weight float32 ``[P, P, 1]`` (None when ``flat_weight`` is None).
    """
    if cfg is None or not cfg.enabled:
        coords = reflect_coordinates(sampling_coordinates(out_size, centre), height, width)
        image = warp_nearest(flat_image, offset, width, coords)[..., tf.newaxis]
        seeds = None
    else:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
        coords = _augmented_coordinates(seeds[0], cfg, out_size, centre, height, width)
        # On whole pixels (no elastic, no affine), nearest equals bilinear: 1 gather, not 4.
        on_grid = tf.reduce_all(tf.equal(coords, tf.math.floor(coords)))
        image = tf.cond(
            on_grid,
            lambda: warp_nearest(flat_image, offset, width, coords),
            lambda: warp_bilinear(flat_image, offset, height, width, coords),
        )[..., tf.newaxis]
    mask = warp_nearest(flat_mask, offset, width, coords)[..., tf.newaxis]
    weight = None
    if flat_weight is not None:
        weight = warp_nearest(flat_weight, offset, width, coords)[..., tf.newaxis]
    if seeds is not None and cfg.intensity_prob > 0:
        use = tf.random.stateless_uniform([], seeds[1]) < cfg.intensity_prob
        image = tf.cond(use, lambda: intensity_jitter(image, seeds[2], cfg), lambda: image)
    return image, mask, weight


def _augmented_coordinates(
    seed: tf.Tensor, cfg: AugmentConfig, out_size: int, centre: tf.Tensor, height: tf.Tensor, width: tf.Tensor
) -> tf.Tensor:
    """float32 ``[P, P, 2]`` source coordinates of a random geometry (elastic,
    affine, rot90/flip) drawn from ``seed``, reflected into the image."""
    matrix, translation, use_elastic, elastic_seed = random_geometry(seed, cfg)
    field = None
    if cfg.elastic and cfg.elastic_prob > 0 and cfg.elastic_alpha > 0:
        field = tf.cond(
            use_elastic,
            lambda: elastic_field(elastic_seed, out_size, cfg.elastic_grid, cfg.elastic_alpha, cfg.elastic_sigma),
            lambda: tf.zeros([out_size, out_size, 2]),
        )
    coords = sampling_coordinates(out_size, centre + translation, matrix, field)
    return reflect_coordinates(coords, height, width)
