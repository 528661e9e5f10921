"""A plan from a fingerprint of the training data (nnU-Net's idea, at our scale): patch size, depth, boundary
width, border-weight sigma and the minimum object size follow from the data, unless set.

:func:`fingerprint` measures the labelled training and validation images as the
run will see them (after ``data.object_diameter`` resized them): image sizes, the
objects' equivalent diameters (the instances of an instance target, else the
connected components of each foreground class), class fractions, the raw intensity
range and whether any file is in colour. :func:`plan` derives from the median
object diameter ``D``:

- **depth**: the architecture's default (U-Net 4, Deep ResUNet 3), raised (up to 6)
  until the network's receptive field covers two diameters, so an object and its
  surroundings are seen together (:func:`receptive_field`: U-Net depth 4 sees 203 px);
- **patch size**: 256 px (measured on the demo, ISBI 2012, GOWT1), or the power of two
  that holds four diameters when that is larger (at most 1024), never larger than the
  smallest image;
- **boundary width** and **border sigma** (instance targets): 2 px and 5 px where they
  were measured, for objects 10 to 64 px across (DSB2018 nuclei at 18 px, GOWT1 at
  61 px); outside that range they scale with ``D`` (1 px and ``D / 2`` below,
  ``D / 32`` and ``D / 12`` above), so a 200 px cell keeps a boundary it can learn
  and an 8 px nucleus is not all boundary;
- **minimum object size** (instance targets): a quarter of the 5th-percentile
  training object (:func:`unet_tf.data.targets.min_object_size`).

So today's defaults are what the plan gives on the data they were measured on,
and data at other scales gets values scaled from them. A value set in the
settings (``data.patch_size``, ``model.depth``, ``data.boundary_width``,
``data.border_sigma``) is kept; the plan says which values came from where.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from unet_tf.config import DEFAULT_DEPTH, RunConfig
from unet_tf.data.labels import read_class_ids, read_instances, read_raw_image
from unet_tf.data.layouts import ArraySample, DatasetSpec, Sample
from unet_tf.data.splits import TrainingData
from unet_tf.data.targets import IGNORE_ID, min_object_size
from unet_tf.io.images import is_colour
from unet_tf.objects.scale import component_areas, equivalent_diameters, instance_areas

DEFAULT_PATCH = 256
MAX_PATCH = 1024
MAX_DEPTH = 6
MEASURED_DIAMETERS = (10.0, 64.0)  # px: objects across which boundary 2 px and sigma 5 px were measured
DEFAULT_BOUNDARY, DEFAULT_SIGMA = 2, 5.0
CONTEXT_DIAMETERS = 2  # the receptive field covers this many object diameters
PATCH_DIAMETERS = 4  # a patch holds this many object diameters


@dataclass(frozen=True)
class Fingerprint:
    """What :func:`fingerprint` measured of the labelled images of a run."""

    n_images: int
    median_size: tuple[int, int]  # (H, W), px
    smallest_side: int
    n_objects: int
    object_diameter: float | None  # median equivalent diameter, px; None without objects
    diameter_range: tuple[float, float] | None  # 10th and 90th percentiles
    class_fractions: tuple[float, ...]
    intensity: tuple[float, float]  # 0.5th and 99.5th percentiles of the raw values, over all images
    dtype: str
    colour_files: int  # image files in colour (read as luminance: bench/bench_colour.py)
    min_size: int | None  # smallest object worth reporting (instance targets)

    def describe(self) -> str:
        h, w = self.median_size
        scale = (
            "no objects"
            if self.object_diameter is None
            else f"{self.n_objects} objects of {self.object_diameter:.1f} px "
            f"(10-90 %: {self.diameter_range[0]:.1f}-{self.diameter_range[1]:.1f})"
        )
        fractions = "/".join(f"{f:.2f}" for f in self.class_fractions)
        colour = f", {self.colour_files} colour files read as luminance" if self.colour_files else ""
        return (
            f"{self.n_images} images, median {w}x{h} px, {scale}, class fractions {fractions}, "
            f"{self.dtype} intensities {self.intensity[0]:g}-{self.intensity[1]:g}{colour}"
        )


def _areas(sample: Sample | ArraySample, spec: DatasetSpec, ids: np.ndarray) -> np.ndarray:
    """Object areas: the instances of an instance target, else the components of each class of ``ids``."""
    if spec.target == "instances":
        return instance_areas(read_instances(sample, spec))
    return component_areas(ids, range(1, spec.n_classes))


def _one_page_file(sample: Sample | ArraySample):
    if isinstance(sample, ArraySample):
        return sample.source
    return sample.image if sample.page is None else None


def fingerprint(data: TrainingData) -> Fingerprint:
    """Measure the training and validation images of ``data`` (see the module docstring)."""
    samples = list(dict.fromkeys((*data.train, *data.val)))
    spec, shapes, areas, lows, highs, dtypes = data.spec, [], [], [], [], set()
    counts = np.zeros(spec.n_classes, np.int64)
    for sample in samples:
        image = read_raw_image(sample)[0]
        shapes.append(image.shape)
        lows.append(float(np.percentile(image, 0.5)))
        highs.append(float(np.percentile(image, 99.5)))
        dtypes.add(str(image.dtype))
        ids = read_class_ids(sample, spec)
        areas.append(_areas(sample, spec, ids))
        counts += np.bincount(ids[ids != IGNORE_ID].ravel(), minlength=spec.n_classes)[: spec.n_classes]
    areas = np.concatenate(areas) if areas else np.zeros(0, np.int64)
    diameters = equivalent_diameters(areas[areas > 0])
    return Fingerprint(
        n_images=len(samples),
        median_size=tuple(int(v) for v in np.median(np.array(shapes), axis=0)),
        smallest_side=int(min(min(s) for s in shapes)),
        n_objects=int(diameters.size),
        object_diameter=float(np.median(diameters)) if diameters.size else None,
        diameter_range=tuple(float(v) for v in np.percentile(diameters, [10, 90])) if diameters.size else None,
        class_fractions=tuple(float(c) for c in counts / max(1, counts.sum())),
        intensity=(min(lows), max(highs)),
        dtype="/".join(sorted(dtypes)),
        colour_files=sum(is_colour(f) for f in map(_one_page_file, samples) if f is not None),
        min_size=min_object_size(areas) if spec.target == "instances" else None,
    )


RECEPTIVE_FIELD = {"unet": (13, 5), "resunet": (10, 4)}  # (a, b): a * 2^depth - b px


def receptive_field(model: str, depth: int) -> int:
    """Receptive field in px of ``model`` with ``depth`` 2x downsamplings: U-Net ``13 * 2^depth - 5`` (203 px at
    depth 4), Deep ResUNet ``10 * 2^depth - 4`` (76 px at depth 3); measured as the extent of the response
    to one bright pixel of the built networks (tests/training/test_plan.py)."""
    a, b = RECEPTIVE_FIELD[model]
    return a * 2**depth - b


def _depth(model: str, default: int, diameter: float | None) -> int:
    depth = default
    while diameter and receptive_field(model, depth) < CONTEXT_DIAMETERS * diameter and depth < MAX_DEPTH:
        depth += 1
    return depth


def _patch(diameter: float | None, depth: int, smallest_side: int) -> int:
    patch = DEFAULT_PATCH
    if diameter:
        patch = max(patch, min(MAX_PATCH, 2 ** math.ceil(math.log2(PATCH_DIAMETERS * diameter))))
    divisor = 2**depth
    fits = max(divisor, smallest_side // divisor * divisor)
    return min(patch, fits)


def _boundary_and_sigma(diameter: float | None) -> tuple[int, float]:
    low, high = MEASURED_DIAMETERS
    if diameter is None or low <= diameter <= high:
        return DEFAULT_BOUNDARY, DEFAULT_SIGMA
    if diameter < low:
        return 1, round(max(1.0, diameter / 2), 1)
    return max(DEFAULT_BOUNDARY, round(diameter / 32)), round(diameter / 12, 1)


@dataclass(frozen=True)
class Plan:
    """The planned values and, for each, ``data`` (from the fingerprint) or ``set`` (kept from the settings)."""

    model: str
    patch_size: int
    depth: int
    boundary_width: int
    border_sigma: float
    min_size: int | None
    sources: dict

    def describe(self) -> str:
        s = self.sources
        parts = [
            f"patch {self.patch_size} px ({s['patch_size']})",
            f"depth {self.depth} ({s['depth']}; receptive field {receptive_field(self.model, self.depth)} px)",
            f"boundary {self.boundary_width} px ({s['boundary_width']})",
            f"border sigma {self.border_sigma:g} px ({s['border_sigma']})",
        ]
        if self.min_size is not None:
            parts.append(f"min size {self.min_size} px (data)")
        return ", ".join(parts)


def plan(fp: Fingerprint, cfg: RunConfig) -> Plan:
    """The planned settings of a run with fingerprint ``fp``; values set in ``cfg`` are kept."""
    d, m = cfg.data, cfg.model
    diameter = fp.object_diameter
    depth = m.depth if m.depth is not None else _depth(m.model, DEFAULT_DEPTH[m.model], diameter)
    boundary, sigma = _boundary_and_sigma(diameter)
    chosen = {
        "patch_size": d.patch_size if d.patch_size is not None else _patch(diameter, depth, fp.smallest_side),
        "depth": depth,
        "boundary_width": d.boundary_width if d.boundary_width is not None else boundary,
        "border_sigma": d.border_sigma if d.border_sigma is not None else sigma,
    }
    settings = {
        "patch_size": d.patch_size,
        "depth": m.depth,
        "boundary_width": d.boundary_width,
        "border_sigma": d.border_sigma,
    }
    sources = {k: "set" if settings[k] is not None else "data" for k in chosen}
    return Plan(model=m.model, **chosen, min_size=fp.min_size, sources=sources)


def apply_plan(
    cfg: RunConfig, data: TrainingData, log: Callable[[str], None] = print
) -> tuple[RunConfig, TrainingData, Fingerprint, Plan]:
    """(``cfg`` with the planned values filled in, ``data`` with its boundary width, the fingerprint, the plan);
    both are logged."""
    fp = fingerprint(data)
    planned = plan(fp, cfg)
    log(f"fingerprint: {fp.describe()}")
    log(f"plan: {planned.describe()}")
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data,
            patch_size=planned.patch_size,
            boundary_width=planned.boundary_width,
            border_sigma=planned.border_sigma,
        ),
        model=dataclasses.replace(cfg.model, depth=planned.depth),
    )
    if data.spec.target == "instances" and data.spec.boundary_width != planned.boundary_width:
        data = dataclasses.replace(data, spec=dataclasses.replace(data.spec, boundary_width=planned.boundary_width))
    return cfg, data, fp, planned
