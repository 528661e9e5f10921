"""Benchmark the web app against predict.py on one large image; check the page stays responsive.

Three measurements, the model loaded once (as the app's ``st.cache_resource``
keeps it) and traced by one warm-up prediction first:

1. **Same work, two callers** (in-process, alternating, median of
   ``--repeats``): predict.py's ``predict_files`` on one image (read ->
   ``predict_image`` -> mask / overlay / probability files -> objects ->
   tables) against the app's path in :mod:`unet_tf.app.logic` (upload bytes ->
   ``read_upload`` -> ``predict_image`` with a progress callback ->
   ``image_files`` -> ``measure_objects`` -> ``table_files``).
2. **The whole page** under Streamlit's ``AppTest``: the script run that
   predicts (progress bar, previews, tables, downloads), minus nothing.
3. **Responsiveness** (``--browser``, needs Chromium and Playwright): the app
   served by ``python -m unet_tf.app``; one browser session uploads the image;
   while it predicts, the server's ``/_stcore/health`` is polled every 0.2 s
   and a second browser session opens the page (model cached) and must show it.

The model is the default U-Net (base 16, depth 4, 2 classes) with random
weights; the image is bench_predict's synthetic 16-bit blobs.

    python bench/bench_app.py --size 2048 --repeats 3 --browser
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--size", type=int, default=2048, help="image side in px")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each caller")
    p.add_argument("--browser", action="store_true", help="also measure responsiveness in Chromium")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    return p.parse_args(argv)


def make_model(path: Path) -> None:
    from unet_tf.config import ModelConfig
    from unet_tf.models import build_model
    from unet_tf.models.file import ModelInfo, attach_info

    info = ModelInfo((0, 255), ("background", "cell"), patch_size=256, size_divisor=16)
    attach_info(build_model(ModelConfig(), 2), info).save(path)


def cli_path(model, image_path: Path, out: Path) -> float:
    """predict.py after its model is loaded: predict_files on one image."""
    from unet_tf.app.logic import predict_config
    from unet_tf.data.layouts import Sample
    from unet_tf.prediction.files import predict_files

    t0 = time.perf_counter()
    predict_files(model, [Sample(image_path)], out, predict_config(), log=lambda text: None)
    return time.perf_counter() - t0


def app_path(model, info, name: str, data: bytes) -> float:
    """The page's work without Streamlit: logic.* around predict_image."""
    from unet_tf.app import logic
    from unet_tf.evaluation.semantic import Evaluator
    from unet_tf.objects.morphometry import measure_objects
    from unet_tf.prediction.image import predict_image

    config = logic.predict_config()
    t0 = time.perf_counter()
    image = logic.read_upload(name, data)
    ticks = []
    result = predict_image(model, image, config, progress=lambda done, total: ticks.append(done))
    stem = Path(name).stem
    logic.image_files(stem, image, result, info, config)
    objects = measure_objects(result.ids, info.class_names, image_name=stem)
    logic.table_files(objects, [stem], Evaluator(info.class_names), info, config)
    return time.perf_counter() - t0


def same_work(args, model, info, image_path: Path, work: Path) -> dict:
    data = image_path.read_bytes()
    app_path(model, info, image_path.name, data)  # warm-up: traces the tile shape
    cli, app = [], []
    for i in range(args.repeats):  # alternate, so a busy neighbour slows both alike
        cli.append(cli_path(model, image_path, work / f"cli{i}"))
        app.append(app_path(model, info, image_path.name, data))
        print(f"  repeat {i + 1}: predict.py {cli[-1]:.2f} s, app {app[-1]:.2f} s", flush=True)
    c, a = statistics.median(cli), statistics.median(app)
    return {"predict_py_s": c, "app_s": a, "app_vs_cli": a / c - 1}


def whole_page(runs: Path, image_path: Path) -> dict:
    from streamlit.testing.v1 import AppTest

    from unet_tf.app import PAGE

    os.environ["UNET_TF_APP_RUNS"] = str(runs)
    at = AppTest.from_file(str(PAGE), default_timeout=600)
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    warm = image_path.with_name("warm.tif")  # one tile: traces the page's model as the warm-up did
    tifffile.imwrite(warm, tifffile.imread(image_path)[:512, :512])
    at.file_uploader(key="images").set_value((warm.name, warm.read_bytes(), "image/tiff"))
    at.run()
    at.file_uploader(key="images").set_value((image_path.name, image_path.read_bytes(), "image/tiff"))
    t0 = time.perf_counter()
    at.run()
    predicting = time.perf_counter() - t0
    at.slider(key="opacity").set_value(0.8)
    t0 = time.perf_counter()
    at.run()
    rerun = time.perf_counter() - t0
    assert not at.exception and not at.error, [e.value for e in at.error]
    objects = len(at.dataframe[2].value)
    return {
        "page_load_s": first,
        "page_predict_run_s": predicting,
        "page_rerun_opacity_s": rerun,
        "page_objects_in_table": objects,
    }


def poll_health(url: str, stop: threading.Event, latencies: list) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=30) as response:
            response.read()
        latencies.append((t0, time.perf_counter() - t0))
        stop.wait(0.2)


def responsiveness(args, runs: Path, image_path: Path, port: int = 8599) -> dict:
    from playwright.sync_api import sync_playwright
    from test_app_browser import wait_until_healthy

    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "unet_tf.app", "--port", str(port), "--runs", str(runs)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(url, server)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            first = browser.new_context().new_page()
            first.goto(url)
            first.get_by_text("Classes: background").wait_for(timeout=600_000)  # model loaded and cached
            latencies: list[float] = []
            stop = threading.Event()
            t0 = time.perf_counter()
            first.get_by_role("region", name="Images (TIFF").locator('input[type="file"]').set_input_files(
                str(image_path)
            )
            first.get_by_text(re.compile(r"scan\.tif: (tile|predicting)")).wait_for(timeout=600_000)  # progress bar
            poller = threading.Thread(target=poll_health, args=(url, stop, latencies))
            poller.start()
            t1 = time.perf_counter()
            second = browser.new_context().new_page()
            second.goto(url)
            second.get_by_text("Classes: background").wait_for(timeout=600_000)
            second_load = time.perf_counter() - t1
            still_predicting = first.get_by_text("Downloads", exact=True).count() == 0
            first.get_by_text("Downloads", exact=True).wait_for(timeout=600_000)
            total = time.perf_counter() - t0
            slow = [(round(start - t0, 1), round(1000 * lat)) for start, lat in latencies if lat > 0.5]
            stop.set()
            poller.join()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "browser_upload_to_results_s": total,
        "second_session_page_s": second_load,
        "second_session_while_predicting": still_predicting,
        "health_polls": len(latencies),
        "health_median_ms": 1000 * statistics.median(lat for _, lat in latencies),
        "health_max_ms": 1000 * max(lat for _, lat in latencies),
        "health_slow_polls (s after upload, ms)": slow,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    from bench_predict import write_synthetic

    from unet_tf.models.file import load_model_and_info

    with tempfile.TemporaryDirectory(prefix="bench_app_") as folder:
        work = Path(folder)
        runs = work / "runs" / "bench"
        runs.mkdir(parents=True)
        make_model(runs / "best.keras")
        image_path = work / "scan.tif"
        write_synthetic(image_path, (args.size, args.size))
        model, info = load_model_and_info(runs / "best.keras")
        print(f"image {args.size}x{args.size} uint16, default U-Net (random weights), tile 512, overlap 64")
        results = same_work(args, model, info, image_path, work)
        results.update(whole_page(work / "runs", image_path))
        if args.browser:
            results.update(responsiveness(args, work / "runs", image_path))
    for key, value in results.items():
        print(f"{key:34s} {value:.3f}" if isinstance(value, float) else f"{key:34s} {value}")


if __name__ == "__main__":
    main()
