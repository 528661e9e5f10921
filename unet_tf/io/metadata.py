"""Physical pixel size in TIFF metadata: read it (OME, ImageJ, resolution tags), write it.

Reading, in this order (the first source that states a size decides):

1. OME-XML ``Pixels/@PhysicalSizeX`` (+ ``PhysicalSizeXUnit``, default µm).
2. ImageJ description ``unit=`` (``micron``, ``um``, ``\\u00B5m``, ``nm``, ...)
   with the XResolution tag in pixels per that unit. ImageJ's ``spacing`` is
   the Z step, not the pixel size, and is ignored here.
3. XResolution with ResolutionUnit 2 (inch) or 3 (cm). ResolutionUnit 1 (none)
   or absent has no absolute unit: no size. Whole-number dpi up to 1200 in
   inches (72, 96, 300 ...) are screen/print defaults, not a calibration: no size.

Anisotropic pixels (X != Y): X is taken and the source text says so. No size
(None) always comes with a reason the caller can say once.

Writing (:func:`resolution_kwargs`) follows what ImageJ itself writes, because
that is what Fiji's own TIFF opener reads: X/YResolution in pixels per micron,
ResolutionUnit none, and ``unit=micron`` in an ``ImageJ=`` description. Fiji's
opener shows plain resolution tags in cm as "cm" (ij.io.FileOpener converts to
µm only under an option), whereas Bio-Formats (which Fiji uses for tiled and
BigTIFF files) reads the ImageJ description too. The description carries no
``images=`` entry, so every page stays its own IFD (compressed, written one
page at a time) and ImageJ reads the stack IFD by IFD.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# Micrometres per unit. Keys are lower-case; both micro signs (U+00B5, U+03BC).
_UM_PER_UNIT = {
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "um": 1.0,
    "\u00b5m": 1.0,
    "\u03bcm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "pm": 1e-6,
    "\u00e5": 1e-4,
    "angstrom": 1e-4,
    "in": 25400.0,
    "inch": 25400.0,
    "ft": 304800.0,
}
_NO_UNIT = {"", "pixel", "pixels", "px", "none"}
# ResolutionUnit tag: 2 inch, 3 cm; 4 mm and 5 µm are tifffile's extensions.
_UM_PER_RESUNIT = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
IMAGEJ_DESCRIPTION = "ImageJ=1.11a\nunit=micron\n"
RESUNIT_NONE = 1


def um_per_unit(unit: str) -> float | None:
    """Micrometres in one ``unit`` ('nm', 'micron', '\\u00B5m', 'cm', ...), None if unknown."""
    text = re.sub(r"\\u00b5|\\u03bc", "\u00b5", unit.strip(), flags=re.IGNORECASE)
    return _UM_PER_UNIT.get(text.lower())


def _rational(tag) -> float | None:
    """A TIFF RATIONAL tag value (numerator, denominator) as a float, None if unusable."""
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, tuple):
        num, den = value[0], value[1]
        value = num / den if den else 0.0
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def _xy_result(x_um: float, y_um: float | None, source: str) -> tuple[float, str]:
    """(X size, source text), noting anisotropic pixels (X is taken)."""
    text = f"{source}: {x_um:.6g} \u00b5m"
    if y_um is not None and not math.isclose(x_um, y_um, rel_tol=1e-6):
        text += f" (anisotropic: X {x_um:.6g} \u00b5m, Y {y_um:.6g} \u00b5m; using X)"
    return x_um, text


def _from_ome(xml: str) -> tuple[float | None, str] | None:
    """Pixel size from OME-XML's first Pixels element; None when it states none."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        value, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m")
        if value is None:
            sizes.append(None)
            continue
        scale = um_per_unit(unit)
        if scale is None:
            return None, f"OME PhysicalSize{axis}Unit '{unit}' is not a length unit this reader knows"
        sizes.append(float(value) * scale)
    if not (math.isfinite(sizes[0]) and sizes[0] > 0):
        return None, f"OME PhysicalSizeX '{pixels.get('PhysicalSizeX')}' is not a positive size"
    return _xy_result(sizes[0], sizes[1], "OME PhysicalSizeX")


def _from_imagej(meta: dict, page) -> tuple[float | None, str] | None:
    """Pixel size from ImageJ's ``unit=`` and the resolution tags; None without a unit."""
    unit = str(meta.get("unit", "")).strip()
    if unit.lower() in _NO_UNIT:
        return None
    scale = um_per_unit(unit)
    if scale is None:
        return None, f"ImageJ unit '{unit}' is not a length unit this reader knows"
    xres = _rational(page.tags.get("XResolution"))
    if xres is None:
        return None, f"ImageJ unit '{unit}' but no XResolution tag"
    yres = _rational(page.tags.get("YResolution"))
    y_um = scale / yres if yres else None
    return _xy_result(scale / xres, y_um, f"ImageJ resolution in {unit}")


def _from_tags(page) -> tuple[float | None, str]:
    """Pixel size from XResolution/YResolution + ResolutionUnit."""
    xres = _rational(page.tags.get("XResolution"))
    if xres is None:
        return None, "no XResolution tag"
    tag = page.tags.get("ResolutionUnit")
    unit = int(tag.value) if tag is not None else RESUNIT_NONE
    if unit == RESUNIT_NONE:
        return None, "resolution tags have no absolute unit (ResolutionUnit none)"
    if unit not in _UM_PER_RESUNIT:
        return None, f"ResolutionUnit {unit} is not a unit this reader knows (2 = inch, 3 = cm)"
    if unit == 2 and xres == round(xres) and xres <= 1200:
        return None, f"{xres:g} dpi is a screen/print default, not a microscope calibration"
    yres = _rational(page.tags.get("YResolution"))
    scale = _UM_PER_RESUNIT[unit]
    name = {2: "inch", 3: "cm", 4: "mm", 5: "\u00b5m"}[unit]
    return _xy_result(scale / xres, scale / yres if yres else None, f"TIFF resolution tags ({name})")


def pixel_size_um(path: str | Path) -> tuple[float | None, str]:
    """Physical pixel size of an image file in micrometres, with where it came from.

    Args:
        path: str | Path, an image file. TIFF (incl. OME-TIFF, ImageJ) is read
            from its first page's metadata; PNG/JPEG/BMP carry no size.

    Returns:
        (size_um, source): size_um is a float (X size for anisotropic pixels)
        or None; source is a one-line text saying where the size came from, or
        why there is none (unknown unit, no tags, ...), for the caller to say once.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None, f"{path.suffix} files carry no pixel size"
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            found = _from_ome(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
            if found is None and tif.is_imagej:
                found = _from_imagej(tif.imagej_metadata or {}, page)
            return found if found is not None else _from_tags(page)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        return None, f"metadata unreadable ({exc})"


def resolution_kwargs(pixel_size_um: float | None, first_page: bool = True) -> dict:
    """tifffile ``write`` arguments that store a pixel size the way ImageJ does.

    Args:
        pixel_size_um: float | None, the pixel size in µm; None gives ``{}``.
        first_page: bool, include the ``ImageJ=`` description (first page only).

    Returns:
        dict with ``resolution`` (pixels per µm, X and Y), ``resolutionunit``
        (none) and, on the first page, ``description`` and ``metadata=None``.
    """
    if pixel_size_um is None:
        return {}
    size = float(pixel_size_um)
    if not (math.isfinite(size) and size > 0):
        raise ValueError(f"pixel_size_um must be a positive number, got {pixel_size_um!r}")
    kwargs = {"resolution": (1.0 / size, 1.0 / size), "resolutionunit": RESUNIT_NONE, "metadata": None}
    if first_page:
        kwargs["description"] = IMAGEJ_DESCRIPTION
    return kwargs


def needs_bigtiff(nbytes: int) -> bool:
    """True when ``nbytes`` of pixel data would not fit a classic (32-bit offset) TIFF."""
    return nbytes > 2**32 - 2**25  # keep 32 MiB for IFDs and tag data
