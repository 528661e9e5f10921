"""The one real-browser test: Chromium (Debian's) drives the app started by ``python -m unet_tf.app``.

Uploads an image, waits for the overlay, downloads the mask and checks it is
byte-for-byte the mask predict.py writes for the same model and image. A
screenshot of the page is kept under tmp_path, and under ``$UNET_TF_ARTIFACTS``
when that is set. Skipped only when Chromium or Playwright is missing (CI
installs both).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _helpers import TEM_NAMES, TEM_VALUES, save_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium is not installed")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def app(tmp_path):
    """(address, runs folder) of the app serving a tiny TEM model; stopped afterwards."""
    run = tmp_path / "runs" / "tem-unet-test"
    run.mkdir(parents=True)
    save_model(run / "best.keras", TEM_VALUES, TEM_NAMES)
    (run / "summary.json").write_text(json.dumps({"best": {"dice": 0.5}}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "app.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "unet_tf.app", "--port", str(port), "--runs", str(tmp_path / "runs")],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_healthy(url, process)
            yield url, run
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def save_artefact(path: Path) -> None:
    folder = os.environ.get("UNET_TF_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def test_upload_see_overlay_download_mask_as_predict_py(app, tmp_path):
    from unet_tf.cli.predict import main as predict_main

    url, run = app
    image = tmp_path / "cells.tif"
    tifffile.imwrite(image, np.random.default_rng(3).integers(0, 60000, (96, 128)).astype(np.uint16))
    assert (
        predict_main(["--weights", str(run / "best.keras"), "--input", str(image), "--out", str(tmp_path / "cli")]) == 0
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(url)
        page.get_by_text("Classes: background", exact=False).wait_for(timeout=120_000)  # model loaded
        images = page.get_by_role("region", name="Images (TIFF")
        images.locator('input[type="file"]').set_input_files(str(image))
        page.get_by_text("Segmentation", exact=True).wait_for(timeout=120_000)
        page.get_by_text("Downloads", exact=True).wait_for(timeout=60_000)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="cells_mask.tif").click()
        got = tmp_path / "downloaded_mask.tif"
        download.value.save_as(got)
        suggested = download.value.suggested_filename
        page.set_viewport_size({"width": 1400, "height": 2400})  # the page scrolls inside: show it all
        page.wait_for_timeout(1000)
        shot = tmp_path / "app_page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    save_artefact(shot)
    assert suggested == "cells_mask.tif"
    assert got.read_bytes() == (tmp_path / "cli" / "cells_mask.tif").read_bytes()
