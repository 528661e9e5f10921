"""The Streamlit page: pick a model, upload micrographs, see and download the segmentation.

Run it with ``unet-tf-app`` (or ``python -m unet_tf.app``), which starts
``streamlit run`` on this file. Models are looked for under the folder in the
``UNET_TF_APP_RUNS`` environment variable (set by ``unet-tf-app --runs``;
default ``runs``). Prediction goes through :mod:`unet_tf.app.logic`, i.e. the
functions behind ``predict.py``; results are kept in the session so moving a
slider does not predict again. User mistakes are shown with ``st.error`` naming
the file; the page keeps serving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from unet_tf.app import logic
from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError

RUNS_ENV = "UNET_TF_APP_RUNS"


@dataclass
class Segmented:
    """One uploaded image and what was predicted for it (kept in ``st.session_state``)."""

    name: str  # the upload's file name
    stem: str  # the output name, as predict.py's <stem>
    image: Any  # (H, W) as read
    result: Any  # unet_tf.prediction.image.Prediction
    files: dict  # <stem>_mask.tif, <stem>_overlay.png, <stem>_prob.tif -> bytes
    objects: dict = field(default_factory=dict)  # (pixel size, min size) -> object rows


# === Model ===


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_run_model(path: str, stamp: float):
    """(model, ModelInfo) of a model file; ``stamp`` (its mtime) reloads a rewritten file."""
    from unet_tf.models.file import load_model_and_info

    return load_model_and_info(path, precision=PredictConfig().precision)  # as predict.py


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_upload_model(name: str, sha: str, _data: bytes):
    """(model, ModelInfo) of an uploaded ``.keras`` file, cached by its content digest ``sha``."""
    return logic.load_uploaded_model(name, _data)


def choose_model() -> tuple[str, Any, Any] | None:
    """Sidebar: a model from the runs folder or an upload; (cache key, model, ModelInfo) or None."""
    side = st.sidebar
    side.header("Model")
    source = side.radio("Source", ["Runs folder", "Upload a .keras file"], key="source", horizontal=True)
    if source == "Runs folder":
        runs = side.text_input("Runs folder", value=os.environ.get(RUNS_ENV, "runs"), key="runs")
        entries = logic.find_models(runs)
        if not entries:
            side.warning(f"No best.keras under {runs}: train one with train.py, or upload a .keras file.")
            return None
        entry = side.selectbox("Trained model", entries, format_func=logic.ModelEntry.label, key="model")
        side.caption(entry.label())
        stamp = entry.path.stat().st_mtime
        key, load = f"{entry.path}@{stamp}", lambda: load_run_model(str(entry.path), stamp)
    else:
        upload = side.file_uploader("Model file (.keras)", key="model_file")
        if upload is None:
            return None
        data = upload.getvalue()
        sha = logic.digest(data)
        key, load = f"upload:{sha}", lambda: load_upload_model(upload.name, sha, data)
    try:
        model, info = load()
    except UserInputError as exc:
        st.error(f"Model: {exc}")
        return None
    side.caption(f"Classes: {', '.join(f'{n} ({v})' for n, v in zip(info.class_names, info.class_values))}")
    return key, model, info


def choose_options(info) -> PredictConfig | None:
    """Sidebar: predict.py's options with its defaults; None (and an error) when they do not fit."""
    from unet_tf.prediction.tiled import check_tiling

    d, side, div = PredictConfig(), st.sidebar, info.size_divisor
    side.header("Options")
    tile = side.number_input("Tile (px)", min_value=div, value=d.tile, step=div, key="tile")
    overlap = side.number_input("Overlap (px)", min_value=0, value=d.overlap, step=div, key="overlap")
    tta = side.checkbox("Test-time augmentation (8× slower)", value=d.tta, key="tta")
    threshold = side.slider(
        "Threshold",
        0.01,
        0.99,
        value=d.threshold,
        step=0.01,
        key="threshold",
        disabled=info.n_classes != 2,
        help="foreground probability threshold (binary models)",
    )
    pixel = side.number_input(
        "Pixel size (µm/px; 0 = not given)", min_value=0.0, value=d.pixel_size or 0.0, format="%.4f", key="pixel_size"
    )
    min_size = side.number_input(
        "Minimum object size (px)",
        min_value=0,
        value=info.min_size or 0,
        key="min_size",
        help="default: the model's own, learned from its training objects (0 if it has none)",
    )
    instance_model = info.target == "instances"
    instances = side.checkbox(
        "Instances (one id per object)",
        value=instance_model,
        disabled=instance_model,
        key="instances",
        help="an instance model always splits objects"
        if instance_model
        else "split touching objects of a class (predict.py --split-touching)",
    )
    try:
        config = logic.predict_config(
            tile=int(tile),
            overlap=int(overlap),
            tta=bool(tta),
            threshold=float(threshold),
            pixel_size=float(pixel) or None,
            min_size=int(min_size),
            split_touching=bool(instances) and not instance_model,
        )
        check_tiling(config.tile, config.overlap, div, config.batch_size)
    except UserInputError as exc:
        st.error(f"Options: {exc}")
        return None
    return config


# === Prediction ===


def predict_one(model, info, name: str, data: bytes, config: PredictConfig) -> Segmented:
    """Read, predict at full resolution (progress bar over tiles) and write the per-image files."""
    from unet_tf.prediction.image import predict_image

    image = logic.read_upload(name, data)
    bar = st.progress(0.0, text=f"{name}: predicting")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"{name}: tile {done}/{total}")

    result = predict_image(model, image, config, progress=progress)
    bar.empty()
    stem = Path(name).stem
    return Segmented(name, stem, image, result, logic.image_files(stem, image, result, info, config))


def segment_all(model_key: str, model, info, uploads: list, config: PredictConfig) -> list[Segmented]:
    """Each upload segmented once per (model, content, prediction options); errors shown, others go on."""
    cache = st.session_state.setdefault("segmented", {})
    settings = config  # every option can change the files (pixel size: their resolution tags)
    results, used, stems = [], set(), {}
    for upload in uploads:
        stem = Path(upload.name).stem
        if stem in stems:
            st.error(f"{upload.name}: same name as {stems[stem]}; its outputs would overwrite those (skipped)")
            continue
        data = upload.getvalue()
        key = (model_key, logic.digest(data), upload.name, settings)
        if key not in cache:
            try:
                cache[key] = predict_one(model, info, upload.name, data, config)
            except UserInputError as exc:
                st.error(str(exc))
                continue
        stems[stem] = upload.name
        used.add(key)
        results.append(cache[key])
    for key in set(cache) - used:  # keep memory to what is on the page
        del cache[key]
    return results


def read_truths(results: list[Segmented], uploads: list, info) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """(stem -> class ids of the matching label upload, [(st.error or st.warning, message)])."""
    by_name = {u.name: u for u in uploads}
    pairs = logic.pair_labels([r.name for r in results], list(by_name))
    truths, notes = {}, []
    for r in results:
        if r.name in pairs:
            upload = by_name[pairs[r.name]]
            try:
                truths[r.stem] = logic.read_upload_label(upload.name, upload.getvalue(), info, r.image.shape)
            except UserInputError as exc:
                notes.append(("error", f"{exc} (not evaluated)"))
    for name in sorted(set(by_name) - set(pairs.values())):
        notes.append(("warning", f"{name}: no uploaded image matches this label's name (not used)"))
    return truths, notes


def scores_and_tables(results: list[Segmented], labels: list, info, config: PredictConfig):
    """(Evaluator, predict.py's table files), kept in the session until results, labels or options change."""
    from unet_tf.evaluation.semantic import Evaluator

    key = (tuple(id(r) for r in results), tuple((u.file_id, u.name) for u in labels), config)
    cached = st.session_state.get("tables")
    if cached is None or cached[0] != key:
        truths, notes = read_truths(results, labels, info) if labels else ({}, [])
        evaluator = Evaluator(info.class_names)
        for res in results:
            if res.stem in truths:
                evaluator.add(res.stem, truths[res.stem], res.result.ids)
        objects = [row for res in results for row in objects_of(res, info, config)]
        tables = logic.table_files(objects, [res.stem for res in results], evaluator, info, config)
        cached = st.session_state["tables"] = (key, evaluator, tables, notes)
    for kind, message in cached[3]:
        getattr(st, kind)(message)
    return cached[1], cached[2]


# === Results ===


def objects_of(r: Segmented, info, config: PredictConfig) -> list[dict]:
    """predict.py's object rows of one image (one per instance where there are instances)."""
    from unet_tf.prediction.files import object_rows

    key = (config.pixel_size, config.min_size)
    if key not in r.objects:
        r.objects[key] = object_rows(r.result, info, r.image, r.stem, config.pixel_size, config.min_size)
    return r.objects[key]


def shown(rows: list[dict], columns=None) -> pd.DataFrame:
    """A table for the page: columns that are empty throughout (µm without a pixel size) left out."""
    frame = pd.DataFrame(rows, columns=columns)
    return frame.dropna(axis=1, how="all") if len(frame) else frame


def show_images(r: Segmented, info) -> None:
    """Image and overlay side by side (subsampled preview of large images), opacity slider, legend."""
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="opacity")
    step = logic.preview_step(r.image.shape)
    h, w = r.image.shape
    note = f" · shown at 1/{step}, predicted at full resolution" if step > 1 else ""
    left, right = st.columns(2)
    left.image(
        logic.gray_preview(r.image, step),
        caption=f"{r.name} · {w}×{h} px · {r.image.dtype}{note}",
        width="stretch",
        output_format="JPEG",
    )
    right.image(
        logic.overlay_preview(r.image, r.result.ids, info.class_names, opacity, step),
        caption="Segmentation",
        width="stretch",
        output_format="JPEG",
    )
    chips = " ".join(
        f'<span style="background:{colour};border-radius:3px;padding:0 .6em">&nbsp;</span> {name}'
        for name, colour in logic.legend(info.class_names)
    )
    st.markdown(f"**Classes:** {chips}", unsafe_allow_html=True)


def show_tables(results: list[Segmented], r: Segmented, info, config: PredictConfig, evaluator) -> None:
    """Per-class areas, object summary, the sortable object table, the area histogram, the metrics."""
    from unet_tf.objects.morphometry import OBJECT_COLUMNS, SUMMARY_COLUMNS, summarize_objects

    objects = [row for res in results for row in objects_of(res, info, config)]
    left, right = st.columns(2)
    left.subheader(f"Area per class · {r.name}")
    left.dataframe(shown(logic.class_areas(r.result.ids, info, config.pixel_size)), hide_index=True)
    right.subheader("Objects per class")
    summary = summarize_objects(objects, info.class_names, [res.stem for res in results], pixel_size=config.pixel_size)
    right.dataframe(shown(summary, SUMMARY_COLUMNS), hide_index=True)
    st.subheader(f"Objects ({len(objects)})")
    st.dataframe(shown(objects, OBJECT_COLUMNS), hide_index=True, key="objects")
    histogram = logic.area_histogram(objects)
    if histogram:
        st.subheader("Object areas")
        colours = dict(logic.legend(info.class_names))
        frame = pd.DataFrame(histogram)
        st.bar_chart(
            frame,
            x="area (px)",
            y=list(frame.columns[1:]),
            y_label="objects",
            sort=False,
            color=[colours[name] for name in frame.columns[1:]],
        )
    if evaluator is not None and len(evaluator):
        st.subheader("Metrics")
        st.code(evaluator.format_table(), language=None)


def show_downloads(results: list[Segmented], r: Segmented, tables: dict[str, bytes]) -> None:
    """predict.py's files for the shown image, the tables, and one zip of everything."""
    st.subheader("Downloads")
    mime = {".tif": "image/tiff", ".png": "image/png", ".csv": "text/csv"}
    files = {**r.files, **tables}
    columns = st.columns(4)
    for i, (name, data) in enumerate(files.items()):
        columns[i % 4].download_button(
            name, data, file_name=name, mime=mime[Path(name).suffix], key=f"download_{name}", on_click="ignore"
        )
    everything = {name: data for res in results for name, data in res.files.items()} | tables
    st.session_state["downloads"] = everything  # what the buttons serve (read by tests)
    st.download_button(
        f"Everything ({len(everything)} files, .zip)",
        lambda: logic.zip_bytes(everything),
        file_name="unet_tf_results.zip",
        mime="application/zip",
        type="primary",
        key="download_zip",
        on_click="ignore",
    )


def show_results(results: list[Segmented], labels: list, info, config: PredictConfig) -> None:
    evaluator, tables = scores_and_tables(results, labels, info, config)
    names = [res.name for res in results]
    shown = st.selectbox("Image", names, key="shown") if len(results) > 1 else names[0]
    r = results[names.index(shown)]
    show_images(r, info)
    show_tables(results, r, info, config, evaluator)
    show_downloads(results, r, tables)


def main() -> None:
    st.set_page_config(page_title="unet_tf segmentation", layout="wide")
    st.title("Segment micrographs")
    chosen = choose_model()
    if chosen is None:
        st.info("Choose a model in the sidebar.")
        return
    key, model, info = chosen
    config = choose_options(info)
    uploads = st.file_uploader("Images (TIFF 8/16-bit or float, PNG, JPEG)", accept_multiple_files=True, key="images")
    labels = st.file_uploader(
        "Ground truth for the images (optional, matched by name)", accept_multiple_files=True, key="labels"
    )
    if config is None or not uploads:
        return
    results = segment_all(key, model, info, uploads, config)
    if results:
        show_results(results, labels or [], info, config)


try:
    main()
except UserInputError as exc:  # a user mistake not caught closer to its widget: one line, no traceback
    st.error(str(exc))
