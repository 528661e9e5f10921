"""Pixel size from TIFF metadata, against hand-computed micrometres."""

import numpy as np
import pytest
import tifffile

from unet_tf.io.metadata import needs_bigtiff, pixel_size_um, resolution_kwargs, um_per_unit

IMAGE = np.zeros((4, 5), np.uint8)


def _tags(path, xres, yres=None, unit=None):
    kwargs = {"resolution": (xres, yres or xres)}
    if unit is not None:
        kwargs["resolutionunit"] = unit
    tifffile.imwrite(path, IMAGE, metadata=None, **kwargs)
    return path


def test_resolution_tags_in_cm(tmp_path):
    # 20,000 pixels per cm; 1 cm = 10,000 um -> 0.5 um per pixel.
    value, source = pixel_size_um(_tags(tmp_path / "a.tif", 20000, unit=3))
    assert value == pytest.approx(0.5) and "cm" in source


def test_resolution_tags_in_inch(tmp_path):
    # 127,000 pixels per inch; 1 inch = 25,400 um -> 0.2 um per pixel.
    value, source = pixel_size_um(_tags(tmp_path / "a.tif", 127000, unit=2))
    assert value == pytest.approx(0.2) and "inch" in source


def test_screen_dpi_and_unitless_tags_give_no_size(tmp_path):
    value, reason = pixel_size_um(_tags(tmp_path / "a.tif", 72, unit=2))
    assert value is None and "72 dpi" in reason
    value, reason = pixel_size_um(_tags(tmp_path / "b.tif", 3.0, unit=1))
    assert value is None and "no absolute unit" in reason
    tifffile.imwrite(tmp_path / "c.tif", IMAGE, metadata=None)  # no resolution written
    assert pixel_size_um(tmp_path / "c.tif")[0] is None


def test_unknown_resolution_unit_gives_none_with_reason(tmp_path):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, IMAGE, metadata=None, resolution=(2.0, 2.0), resolutionunit=1)
    with tifffile.TiffFile(path, mode="r+") as tif:  # write an out-of-spec ResolutionUnit 9
        tif.pages[0].tags["ResolutionUnit"].overwrite(9)
    value, reason = pixel_size_um(path)
    assert value is None and "ResolutionUnit 9" in reason


def test_anisotropic_takes_x_and_says_so(tmp_path):
    # X 20,000 px/cm -> 0.5 um; Y 12,500 px/cm -> 0.8 um.
    value, source = pixel_size_um(_tags(tmp_path / "a.tif", 20000, 12500, unit=3))
    assert value == pytest.approx(0.5)
    assert "anisotropic" in source and "0.8" in source


@pytest.mark.parametrize(
    "unit,pixels_per_unit,expected_um",
    [("micron", 4.0, 0.25), ("\\u00B5m", 2.0, 0.5), ("um", 0.5, 2.0), ("nm", 0.1, 0.01), ("mm", 1000.0, 1.0)],
)
def test_imagej_unit_and_resolution(tmp_path, unit, pixels_per_unit, expected_um):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        np.zeros((3, 4, 5), np.uint8),
        imagej=True,
        resolution=(pixels_per_unit, pixels_per_unit),
        metadata={"unit": unit, "spacing": 7.0},
    )
    value, source = pixel_size_um(path)
    assert value == pytest.approx(expected_um) and "ImageJ" in source  # spacing (Z) is not the pixel size


def test_imagej_unknown_unit_gives_none_with_reason(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, IMAGE, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "furlong"})
    value, reason = pixel_size_um(path)
    assert value is None and "furlong" in reason


@pytest.mark.parametrize(
    "meta,expected_um",
    [
        ({"PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65}, 0.65),  # unit defaults to um
        ({"PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 650, "PhysicalSizeYUnit": "nm"}, 0.65),
        ({"PhysicalSizeX": 0.001, "PhysicalSizeXUnit": "mm"}, 1.0),
    ],
)
def test_ome_physical_size(tmp_path, meta, expected_um):
    path = tmp_path / "a.ome.tif"
    # Resolution tags saying otherwise must lose against the OME-XML.
    tifffile.imwrite(
        path,
        np.zeros((2, 4, 5), np.uint16),
        ome=True,
        metadata={"axes": "ZYX", **meta},
        resolution=(1.0, 1.0),
        resolutionunit=3,
    )
    value, source = pixel_size_um(path)
    assert value == pytest.approx(expected_um) and "OME" in source


def test_ome_unknown_unit(tmp_path):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, IMAGE, ome=True, metadata={"PhysicalSizeX": 1.0, "PhysicalSizeXUnit": "parsec"})
    value, reason = pixel_size_um(path)
    assert value is None and "parsec" in reason


def test_png_and_jpeg_have_no_size(tmp_path):
    assert pixel_size_um(tmp_path / "a.png")[0] is None
    assert pixel_size_um(tmp_path / "a.jpg")[0] is None


def test_unit_table_and_kwargs():
    assert um_per_unit("\u00b5m") == um_per_unit("\u03bcm") == um_per_unit("Micron") == 1.0
    assert um_per_unit("nm") == pytest.approx(1e-3) and um_per_unit("inch") == 25400.0
    assert um_per_unit("furlong") is None
    assert resolution_kwargs(None) == {}
    kwargs = resolution_kwargs(0.25)
    assert kwargs["resolution"] == (4.0, 4.0) and "unit=micron" in kwargs["description"]
    assert "description" not in resolution_kwargs(0.25, first_page=False)
    with pytest.raises(ValueError, match="pixel_size_um"):
        resolution_kwargs(float("nan"))
    assert not needs_bigtiff(2**32 - 2**26) and needs_bigtiff(2**32)


@pytest.mark.slow  # real data
def test_real_ctc_frame_has_its_published_pixel_size():
    import os
    from pathlib import Path

    frame = Path(os.environ.get("UNET_TF_DATA", "data")) / "Fluo-N2DH-GOWT1" / "01" / "t000.tif"
    if not frame.is_file():
        pytest.skip(f"{frame} not present (set UNET_TF_DATA)")
    value, source = pixel_size_um(frame)  # the Cell Tracking Challenge lists 0.240 x 0.240 um
    assert value == pytest.approx(0.240, abs=0.001) and "cm" in source
