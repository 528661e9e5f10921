"""Follow cells through a time-lapse: segment every frame into instances, link them, score the tracks.

``predict.py --track`` calls :func:`track_sequence`. Frames are a folder of
images sorted by name, a Cell Tracking Challenge sequence folder (``01/``) or
a multi-page TIFF (one page per frame). Each frame goes through the same
:func:`unet_tf.prediction.predict_image` as single images (tiling, TTA and
thresholds behave the same) and is reduced to an object table; the frame's
instance labels wait in a temporary file for the second pass that relabels
them with track ids. Memory holds one frame and the tables, never a stack.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .config import PredictConfig, TrackConfig
from .ctc import score_sequence
from .errors import UserInputError
from .inputs import expand_inputs
from .io import iter_pages, page_count, read_image, read_label, write_mask
from .motility import write_outputs
from .prediction import engine, predict_image
from .tables import format_table, write_csv
from .tiff_meta import pixel_size_um
from .tracking import link, object_table

TRACKING_COLUMNS = ("sequence", "DET", "SEG", "TRA", "frames", "tracks", "seconds_per_frame")


def sequence_frames(inputs: Sequence[str]) -> tuple[str, list[Path], int, Callable[[], Iterator[np.ndarray]]]:
    """(name, files, frame count, fresh frame iterator) of a time-lapse given as files, a folder or one stack."""
    paths = expand_inputs(inputs)
    pages = [page_count(p) for p in paths]  # one header read per file
    if len(paths) == 1 and pages[0] > 1:
        stack = paths[0]
        return stack.stem, paths, pages[0], lambda: iter_pages(stack)
    stacks = [p for p, n in zip(paths, pages) if n > 1]
    if stacks:
        raise UserInputError(f"{stacks[0]}: a stack among single frames; give one stack or a folder of frames")
    name = Path(inputs[0]).name if len(inputs) == 1 and Path(inputs[0]).is_dir() else paths[0].parent.name
    return name, paths, len(paths), lambda: (read_image(p) for p in paths)


def ground_truth_folder(inputs: Sequence[str], options: TrackConfig) -> Path | None:
    """``--gt``, else the ``NN_GT`` folder beside a CTC sequence folder ``NN``, else None."""
    if options.gt:
        gt = Path(options.gt)
        if not (gt / "TRA" / "man_track.txt").is_file():
            raise UserInputError(f"{gt}: not a Cell Tracking Challenge ground-truth folder (no TRA/man_track.txt)")
        return gt
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        beside = Path(inputs[0]).parent / f"{Path(inputs[0]).name}_GT"
        if (beside / "TRA" / "man_track.txt").is_file():
            return beside
    return None


def _segment_frames(
    model: Any, frames: Iterator[np.ndarray], n: int, config: PredictConfig, scratch: Path, log: Callable[[str], None]
) -> tuple[list, np.ndarray]:
    """Pass 1: instances of every frame (kept in ``scratch``) and their object tables; (tables, last frame)."""
    tables, last = [], None
    for t, image in enumerate(frames):
        result = predict_image(model, image, config)
        if result.instances is None:
            raise UserInputError(
                "--track: needs objects: use an instance model (ctc, dsb2018, --target instances) or --split-touching"
            )
        write_mask(scratch / f"{t:05d}.tif", result.instances)
        tables.append(object_table(t, result.instances, image, name=f"frame {t}"))
        last = image
        if (t + 1) % 10 == 0 or t + 1 == n:
            log(f"segmented frame {t + 1}/{n} ({len(tables[-1].label)} objects)")
    return tables, last


def track_sequence(
    model: Any,
    inputs: Sequence[str],
    out_dir: str | Path,
    config: PredictConfig = PredictConfig(),
    options: TrackConfig = TrackConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Segment, link and write a time-lapse; score it when ground truth is known. Returns the metrics row.

    Outputs in ``out_dir``: ``maskTTT.tif`` + ``res_track.txt`` (the CTC result
    format), ``tracks.csv``, ``tracks_summary.csv``, ``tracks.png`` and, with
    ground truth, ``tracking_metrics.csv``.
    """
    engine(model)  # a foreign model fails here, before any work
    name, paths, n, frames = sequence_frames(inputs)
    gt = ground_truth_folder(inputs, options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pixel_size = config.pixel_size or pixel_size_um(paths[0])[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unet_tf-track-") as scratch:
        tables, last = _segment_frames(model, frames(), n, config, Path(scratch), log)
        tracks = link(
            tables, max_distance=options.max_distance, max_gap=options.max_gap, divisions=options.divisions, source=name
        )
        labels = (read_label(Path(scratch) / f"{t:05d}.tif") for t in range(n))
        write_outputs(
            tracks, labels, out_dir, background=last, pixel_size=pixel_size, frame_interval=options.frame_interval
        )
    seconds = (time.perf_counter() - t0) / n
    row = {"sequence": name, "frames": n, "tracks": len(tracks.lineage), "seconds_per_frame": round(seconds, 3)}
    log(f"{n} frames, {row['tracks']} tracks ({seconds:.2f} s per frame); outputs in {out_dir}")
    if gt is not None:
        row.update(score_sequence(out_dir, gt))
        write_csv(out_dir / "tracking_metrics.csv", [row], TRACKING_COLUMNS)
        log(format_table([row], TRACKING_COLUMNS, digits=4))
    return row
