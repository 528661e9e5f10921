"""Follow cells through a time-lapse: segment every frame into instances, link them, score the tracks.

``predict.py --track`` calls :func:`track_sequence`. Frames are a folder of
images in natural name order (``frame_2`` before ``frame_10``), a Cell Tracking
Challenge sequence folder (``01/``) or a multi-page TIFF: a plain stack is one
page per frame; a hyperstack (OME, ImageJ) is read along its T axis, and other
axes longer than 1 (C, Z) need ``channel`` / ``z`` to pick one plane. Each frame goes through the same
:func:`unet_tf.prediction.image.predict_image` as single images (tiling, TTA and
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

from unet_tf.config import PredictConfig, TrackConfig
from unet_tf.errors import UserInputError
from unet_tf.io.images import iter_stack_planes, read_image, read_label, stack_axes
from unet_tf.io.metadata import pixel_size_um
from unet_tf.io.tables import format_table, write_csv
from unet_tf.io.writers import write_mask
from unet_tf.prediction.image import engine, predict_image
from unet_tf.prediction.inputs import expand_inputs
from unet_tf.tracking.ctc import score_sequence
from unet_tf.tracking.link import link, object_table
from unet_tf.tracking.motility import write_outputs

TRACKING_COLUMNS = ("sequence", "DET", "SEG", "TRA", "frames", "tracks", "seconds_per_frame")


_PICKS = {"C": "channel", "Z": "z"}


def _axes_text(axes: str, shape: Sequence[int]) -> str:
    return f"{axes}YX ({', '.join(f'{a}={n}' for a, n in zip(axes, shape))})"


def _picked(axes: str, shape: Sequence[int], picks: dict[str, int | None], name: str) -> dict[str, int]:
    """{axis letter: index} of the planes picked by ``channel`` / ``z``, each checked against its axis length."""
    lengths = dict(zip(axes, shape))
    chosen = {}
    for axis, value in picks.items():
        if value is None:
            continue
        if value >= lengths.get(axis, 1):
            raise UserInputError(
                f"{name}: {_PICKS[axis]}={value}, but axes {_axes_text(axes, shape)} have {lengths.get(axis, 1)} "
                f"plane(s) along {axis} (0-based)"
            )
        chosen[axis] = value
    return chosen


def time_planes(
    axes: str, shape: Sequence[int], name: str, channel: int | None = None, z: int | None = None
) -> tuple[list[int], str]:
    """Plane positions of one plane per time point, and the axis read as time.

    Args:
        axes, shape: the file's non-spatial axes and lengths (:func:`unet_tf.io.images.stack_axes`),
            e.g. ``"TC"``, ``(5, 2)``; planes are numbered in the C order of these axes.
        name: the file, for errors.
        channel, z: int | None, the plane picked along C / Z (0-based).

    Returns:
        (positions, time axis letter): ``T`` when the file has one, else its only
        axis longer than 1 (a plain stack's ``I``/``Q``, or an unlabelled ``Z``/``C``),
        else ``""`` (one frame).

    Raises:
        UserInputError: (one line) axes besides time longer than 1 that no parameter
            picks, naming the file, its axes and the parameter that picks a plane.
    """
    chosen = _picked(axes, shape, {"C": channel, "Z": z}, name)
    free = [a for a, n in zip(axes, shape) if n > 1 and a not in chosen]
    time = "T" if "T" in free else (free[0] if len(free) == 1 else "")
    extra = [a for a in free if a != time]
    if extra:
        how = "; ".join(
            f"pick one with {_PICKS[a]}=0..{dict(zip(axes, shape))[a] - 1} (predict.py --{_PICKS[a]})"
            if a in _PICKS
            else f"no parameter picks along {a}: save one plane per time point"
            for a in extra
        )
        raise UserInputError(f"{name}: axes {_axes_text(axes, shape)} hold more than one plane per time point; {how}")
    index = [chosen.get(a, 0) for a in axes]
    positions = []
    for t in range(dict(zip(axes, shape)).get(time, 1)):
        if time:
            index[axes.index(time)] = t
        positions.append(int(np.ravel_multi_index(index, shape)) if axes else 0)
    return positions, time


def sequence_frames(
    inputs: Sequence[str], channel: int | None = None, z: int | None = None
) -> tuple[str, list[Path], int, Callable[[], Iterator[np.ndarray]], str]:
    """(name, files, frame count, fresh frame iterator, what the frames are) of a time-lapse.

    Given as files or a folder of frames (natural name order: ``frame_2`` before
    ``frame_10``) or one stack (its time axis; ``channel`` / ``z`` pick one plane
    of a hyperstack). The last item says the order used, for the log.
    """
    paths = expand_inputs(inputs)
    axes = [stack_axes(p) for p in paths]  # header reads only
    planes = [time_planes(*a, str(p), channel=channel, z=z) for p, a in zip(paths, axes)]
    if len(paths) == 1 and len(planes[0][0]) > 1:
        stack, (positions, time), (letters, shape) = paths[0], planes[0], axes[0]
        picks = "".join(f", {k}={v}" for k, v in (("channel", channel), ("z", z)) if v is not None)
        order = f"{stack.name}: {len(positions)} frames along {time} of axes {_axes_text(letters, shape)}{picks}"
        return stack.stem, paths, len(positions), lambda: iter_stack_planes(stack, positions), order
    stacks = [p for p, (positions, _) in zip(paths, planes) if len(positions) > 1]
    if stacks:
        raise UserInputError(f"{stacks[0]}: a stack among single frames; give one stack or a folder of frames")
    name = Path(inputs[0]).name if len(inputs) == 1 and Path(inputs[0]).is_dir() else paths[0].parent.name
    order = f"{len(paths)} frames in natural name order: {paths[0].name} .. {paths[-1].name}"
    picked = [(p, pos) for p, (pos, _), (letters, _) in zip(paths, planes, axes) if letters]
    if picked:  # frames that are small stacks themselves (e.g. CYX): their picked plane
        order += f" (plane {picked[0][1][0]} of each, e.g. {picked[0][0].name})"
    single = {p for p, (letters, _) in zip(paths, axes) if not letters}
    return name, paths, len(paths), lambda: (_frame(p, pos, p in single) for p, (pos, _) in zip(paths, planes)), order


def _frame(path: Path, positions: list[int], single: bool) -> np.ndarray:
    """The frame in ``path``: the file's only image, or its one picked plane."""
    return read_image(path) if single else next(iter_stack_planes(path, positions))


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
    name, paths, n, frames, order = sequence_frames(inputs, channel=options.channel, z=options.z)
    log(order)
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
