"""Write docs/napari.png: the plugin's two widgets after segmenting a GOWT1 frame with the bundled `nuclei` model.

    UNET_TF_DATA=../shared/data xvfb-run -a -s "-screen 0 1600x1000x24" python docs/napari_screenshot.py

(The README's screenshot. The tests write their own from a tiny untrained model with UNET_TF_SCREENSHOT=1.)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import napari
import tifffile
from qtpy.QtWidgets import QApplication

from unet_tf.napari.widgets import RetrainWidget, SegmentWidget

OUT = Path(__file__).resolve().parent / "napari.png"


def _wait(widget, limit_s: float = 600) -> None:
    start = time.monotonic()
    while widget.busy and time.monotonic() - start < limit_s:
        QApplication.processEvents()
        time.sleep(0.05)


def main() -> int:
    frame = Path(os.environ.get("UNET_TF_DATA", "data")) / "Fluo-N2DH-GOWT1" / "02" / "t010.tif"
    if not frame.is_file():
        print(f"{frame}: not found (set UNET_TF_DATA to the shared data folder)", file=sys.stderr)
        return 1
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    segment, retrain = SegmentWidget(viewer), RetrainWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(retrain, name="Correct and retrain")
    viewer.add_image(tifffile.imread(frame), name="GOWT1 02 t010", contrast_limits=(0, 45))
    segment.model.reset_choices()
    segment.model.value = "nuclei"
    segment.image.reset_choices()
    segment.image.value = "GOWT1 02 t010"
    segment.segment()
    _wait(segment)
    print(segment.status.value)
    viewer.layers["GOWT1 02 t010 labels"].opacity = 0.45
    viewer.layers.selection.active = viewer.layers["GOWT1 02 t010 labels"]
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False)
    segment.model_worker.detach()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
