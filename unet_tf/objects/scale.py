"""Object scale: the typical object diameter of label images, the factor that brings an image to a model's
scale, and the resampling both ways (Cellpose's answer to "the same cells at another magnification").

The typical diameter is the median *equivalent diameter* ``2 * sqrt(area / pi)``
(the diameter of the disc of the object's area) over every object of every
image: the instances of an instance label image, or the connected components
(8-connected, each foreground class on its own) of a class-id image. The median,
not the mean, so a few merged clumps or edge slivers do not move it.

At prediction an image is resized by ``factor`` (> 1 enlarges) so that its
objects have the model's diameter (:func:`choose_factor`): from a diameter
given in the image's px (``model diameter / diameter``), else from the pixel
sizes (``image pixel size / model pixel size``), else estimated from the objects
of first passes at the factors :data:`ESTIMATE_PASSES` (1, 1/2, 1/4), the one
that finds objects of about the model's diameter winning
(:func:`consistent_estimate`), then checked once by the objects found at the
estimate (:func:`implied_factor`; ``unet_tf.prediction.image``). A factor within
:data:`SCALE_TOLERANCE` (5 %) of 1 is not applied: resampling costs more than
the few percent it corrects, and a model tolerates that much. An estimated
factor must differ from 1 by more than :data:`ESTIMATE_TOLERANCE` (10 %): the
estimate has an error of its own. On Fluo-N2DH-GOWT1 02 (full frames 052 055
072, an instance model trained on 01), the estimate at the training scale was
0.944-1.0 for a true 0.985 (predicted nuclei are a little larger than drawn),
and resampling by 0.944 cost 0.011 of mean AP for nothing.

Resampling uses OpenCV: area averaging to shrink an image, bilinear to enlarge
it or to bring probabilities back, nearest (pixel-centre aligned) for class ids
and instance labels, so no label value is invented.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import cv2
import numpy as np
from scipy import ndimage

from unet_tf.errors import UserInputError
from unet_tf.objects.labels import structure

SCALE_TOLERANCE = 0.05  # |factor - 1| up to this: the image is used at its own scale
ESTIMATE_TOLERANCE = 0.10  # the same for an estimated factor (its own error is ~5 %)
ESTIMATE_LIMITS = (0.125, 4.0)  # an estimated factor is kept within these (a first pass of debris is no scale)
ESTIMATE_PASSES = (1.0, 0.5, 0.25)  # first passes at these factors (together 1.3x the cost of one)
AGREEMENT = 1.25  # two passes agree when the diameters they find (in the image's px) differ by less than this ratio
CUT_PIECES = 2.0  # a first pass whose typical group of touching objects holds this many is cutting objects
MIN_PASS_SIDE = 48  # px: a first pass that would shrink the image's shorter side below this is skipped
GIVEN_LIMITS = (1 / 8, 8.0)  # a given diameter may resize by at most 8x either way (memory, sense)
SCALE_SOURCES = ("diameter", "pixel size", "estimate", "none")

# cv2.resize interpolates these dtypes; others are resampled as float64
_CV2_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


# === Measuring ===


def equivalent_diameters(areas: Sequence[float] | np.ndarray) -> np.ndarray:
    """``2 * sqrt(area / pi)`` (float64) for each area in px: the diameter of a disc of that area."""
    return 2.0 * np.sqrt(np.asarray(areas, np.float64) / math.pi)


def instance_areas(labels: np.ndarray) -> np.ndarray:
    """Areas in px (int64, one per object) of an instance label image (0 background; negative ids are not
    objects)."""
    labels = np.asarray(labels)
    return np.unique(labels[labels > 0], return_counts=True)[1].astype(np.int64)


def component_areas(ids: np.ndarray, classes: Iterable[int], connectivity: int = 8) -> np.ndarray:
    """Areas in px (int64) of the connected components of each class in ``classes`` of a class-id image.

    Each class is labelled on its own, so two touching objects of different classes stay two objects.
    """
    ids = np.asarray(ids)
    areas = []
    for c in classes:
        labels, n = ndimage.label(ids == c, structure(connectivity))
        if n:
            areas.append(np.bincount(labels.ravel(), minlength=n + 1)[1:])
    return np.concatenate(areas).astype(np.int64) if areas else np.zeros(0, np.int64)


def median_diameter(areas: Sequence[float] | np.ndarray, min_size: int = 0) -> float | None:
    """Median equivalent diameter in px of objects of ``areas`` px (those under ``min_size`` px left out);
    None when no object is left."""
    areas = np.asarray(areas, np.float64)
    areas = areas[areas >= max(min_size, 1)]
    return float(np.median(equivalent_diameters(areas))) if areas.size else None


# === Choosing the factor ===


def choose_factor(
    model_diameter: float | None,
    model_pixel_size: float | None,
    *,
    diameter: float | None = None,
    pixel_size: float | None = None,
    estimate: bool = True,
) -> tuple[float | None, str]:
    """(resize factor for the image, its source) in the order of the module docstring.

    Args:
        model_diameter: the model's typical object diameter in px (``ModelInfo.object_diameter``), or None.
        model_pixel_size: µm per px of the model's training images, or None.
        diameter: the objects' diameter in px of this image, or None.
        pixel_size: µm per px of this image, or None.
        estimate: whether a first pass may estimate the factor (instance models; a semantic model's classes
            have no one object scale: on the TEM demo the estimate resized a same-scale image by 0.71).

    Returns:
        ``(model_diameter / diameter, "diameter")``; ``(pixel_size / model_pixel_size, "pixel size")``;
        ``(None, "estimate")`` when the factor is to be estimated from a first pass (the model knows its
        diameter); else ``(1.0, "none")``. A given ``diameter`` with a model that knows no diameter is
        ``(1.0, "none")``: the caller says so. A given ``diameter`` whose factor is outside
        :data:`GIVEN_LIMITS` is a UserInputError (an image 40x larger would exhaust memory).
    """
    if diameter is not None and model_diameter:
        factor = model_diameter / diameter
        low, high = GIVEN_LIMITS
        if not low <= factor <= high:
            raise UserInputError(
                f"`predict.diameter` {diameter:g} px: the model's objects are {model_diameter:.1f} px, so the image "
                f"would be resized by {factor:.3g} (allowed {low:g}-{high:g}); check the value"
            )
        return factor, "diameter"
    if diameter is None and model_pixel_size and pixel_size:
        return pixel_size / model_pixel_size, "pixel size"
    if diameter is None and model_diameter and estimate:
        return None, "estimate"
    return 1.0, "none"


def model_factor(info, config) -> tuple[float | None, str]:
    """:func:`choose_factor` for a model's ``ModelInfo`` and a ``PredictConfig``: an estimate only for an
    instance model."""
    return choose_factor(
        info.object_diameter,
        info.pixel_size_um,
        diameter=config.diameter,
        pixel_size=config.pixel_size,
        estimate=info.target == "instances",
    )


def pieces_per_object(instances: np.ndarray) -> float:
    """Median number of instances in each 8-connected group of touching instances (0 without objects).

    Ground truth rarely reaches 2: in the DSB2018 stage-1 training masks, 2 of 664 images have their typical
    group of touching nuclei made of two or more. A network cutting objects larger than its scale does.
    """
    instances = np.asarray(instances)
    groups, n = ndimage.label(instances > 0, structure(8))
    if not n:
        return 0.0
    inside = instances > 0
    pairs = np.unique(np.stack([groups[inside], instances[inside]]), axis=1)
    return float(np.median(np.bincount(pairs[0], minlength=n + 1)[1:]))


def implied_factor(model_diameter: float, factor: float, instances: np.ndarray, min_size: int = 0) -> float | None:
    """The factor that objects found in an image resized by ``factor`` imply, ``factor * model_diameter / d``
    (``d``: their median diameter, objects under ``min_size`` px left out); None without objects."""
    diameter = median_diameter(instance_areas(instances), min_size)
    return None if diameter is None else factor * model_diameter / diameter


def consistent_estimate(
    model_diameter: float, passes: Sequence[tuple[float, np.ndarray]], min_size: int = 0
) -> tuple[float, float] | None:
    """(estimated factor, the pass it came from) of first passes made at several factors; None without objects.

    Args:
        model_diameter: the model's object diameter in px.
        passes: ``(factor f the image was resized by, the instance labels found at f)``.
        min_size: objects under this many px are left out.

    Each pass implies the factor ``g = f * model_diameter / d_f`` (``d_f``: its objects' median diameter) and
    the objects' diameter in the image's own px, ``d_f / f``. Passes at the right scale find whole objects:
    they agree on that diameter, and each implies a factor near its own (``g ~ f``). A pass at a wrong scale
    does not: a network that learned 18 px nuclei cuts 61 px nuclei into pieces or spots of about its own
    diameter, which look consistent on their own (``g ~ 1``) but disagree with the passes that saw whole
    nuclei. So, in turn: passes whose typical group of touching objects holds :data:`CUT_PIECES` or more
    (:func:`pieces_per_object`) are left out, unless every pass is; the candidates are the passes whose implied
    factor is nearer (in log) to their own factor than to any other pass's (each pass answers for the factors
    nearest to it, the first and last for all beyond), or all when none is; of those, the ones agreeing (within
    :data:`AGREEMENT`) with the most other passes on the objects' diameter are kept, and the one whose
    ``|log(g / f)|`` is smallest wins. (A fixed window of :data:`AGREEMENT` around each pass left the factors
    between the windows of passes 2x apart, 0.16-0.2 and 0.31-0.4, to a pass of spots: on DSB2018 nuclei of
    ~100 px the x1 pass found separate 18 px spots implying x0.96, and won over x0.25's whole nuclei at x0.17.)
    """
    found = []
    for factor, instances in passes:
        implied = implied_factor(model_diameter, factor, instances, min_size)
        if implied is not None:
            cut = pieces_per_object(instances) >= CUT_PIECES
            found.append((cut, abs(math.log(implied / factor)), implied, factor, model_diameter / implied))
    if not found:
        return None
    tolerance, factors = math.log(AGREEMENT), [factor for factor, _ in passes]
    whole = [f for f in found if not f[0]] or found
    candidates = [f for f in whole if min(factors, key=lambda g: abs(math.log(f[2] / g))) == f[3]] or whole
    support = [sum(abs(math.log(a[4] / b[4])) <= tolerance for b in whole) for a in candidates]
    agreeing = [f for f, n in zip(candidates, support) if n == max(support)]
    _, _, implied, factor, _ = min(agreeing, key=lambda f: f[1])
    low, high = ESTIMATE_LIMITS
    return float(min(max(implied, low), high)), factor


def applied(factor: float, tolerance: float = SCALE_TOLERANCE) -> float:
    """``factor``, or 1.0 when it is within ``tolerance`` of 1 (the image is used as it is)."""
    return 1.0 if abs(factor - 1.0) <= tolerance else float(factor)


# === Resampling ===


def scaled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(H, W) of a 2-D ``shape`` resized by ``factor``: rounded, at least 1 px each."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def resize(array: np.ndarray, shape: tuple[int, int], kind: str) -> np.ndarray:
    """``array`` (H, W) or (H, W, K) resampled to ``shape`` (H', W') with OpenCV.

    Args:
        array: the image, probabilities, class ids or labels.
        shape: (H', W') of the result.
        kind: ``image`` (area averaging to shrink, bilinear to enlarge), ``linear`` or ``nearest``
            (pixel-centre aligned; for ids and labels: every value of the result is one of the input).

    Returns:
        The resampled array, same dtype as ``array`` (a dtype OpenCV cannot interpolate is
        resampled as float64 and cast back), same number of dimensions.
    """
    array = np.asarray(array)
    height, width = int(shape[0]), int(shape[1])
    if array.shape[:2] == (height, width):
        return array
    if kind == "nearest":
        rows = np.minimum(((np.arange(height) + 0.5) * array.shape[0] / height).astype(np.int64), array.shape[0] - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * array.shape[1] / width).astype(np.int64), array.shape[1] - 1)
        return array[rows[:, None], cols[None, :]]
    if kind == "image":
        shrink = height * width < array.shape[0] * array.shape[1]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    elif kind == "linear":
        interpolation = cv2.INTER_LINEAR
    else:
        raise ValueError(f"kind must be 'image', 'linear' or 'nearest', got {kind!r}")
    work = array if array.dtype in _CV2_DTYPES else array.astype(np.float64)
    out = cv2.resize(work, (width, height), interpolation=interpolation)
    out = out.reshape((height, width, *array.shape[2:]))
    if out.dtype != array.dtype:
        out = np.round(out) if array.dtype.kind in "iub" else out
        out = out.astype(array.dtype)
    return out
