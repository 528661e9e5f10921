"""Follow cells through a time-lapse: THE tracking pipeline, from images or label frames to tracks and scores.

:func:`track_frames` is the pipeline, in two passes that keep memory bounded
(one frame and the small per-frame object tables, never a stack):

1. Pass 1: every frame becomes an object table
   (:func:`unet_tf.tracking.link.object_table`). Frames are instance label
   frames, or images that ``segment`` turns into instance labels; those labels
   wait in a temporary file for pass 2, and the image gives each object its
   mean intensity.
2. :func:`unet_tf.tracking.link.link` joins the tables into tracks (laptrack).
3. Pass 2: :func:`write_outputs` reads the label frames again, one at a time,
   replaces each label by its track id and writes the CTC result
   (:mod:`unet_tf.tracking.ctc`), the motility tables and the trajectory plot
   (:mod:`unet_tf.tracking.motility`).

:func:`track_sequence` (``predict`` with ``track``) runs it on images with a
model: frames are a folder of images in natural name order (``frame_2`` before
``frame_10``), a Cell Tracking Challenge sequence folder (``01/``) or a
multi-page TIFF: a plain stack is one page per frame; a hyperstack (OME,
ImageJ) is read along its T axis, and other axes longer than 1 (C, Z) need
`track.channel` / `track.z` to pick one plane. Each frame goes through the same
:func:`unet_tf.prediction.image.predict_image` as single images (tiling, TTA
and thresholds behave the same); with ground truth the result is scored.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from unet_tf.config import PredictConfig, TrackConfig
from unet_tf.errors import UserInputError
from unet_tf.io.images import iter_stack_planes, read_image, read_label, stack_axes
from unet_tf.io.metadata import pixel_size_um
from unet_tf.io.tables import format_table, write_csv
from unet_tf.io.writers import write_mask
from unet_tf.prediction.image import engine, predict_image
from unet_tf.prediction.inputs import expand_inputs
from unet_tf.tracking.ctc import score_sequence, write_ctc_mask, write_res_track
from unet_tf.tracking.link import ObjectTable, Tracks, link, object_table
from unet_tf.tracking.motility import plot_tracks, write_track_tables

TRACKING_COLUMNS = ("sequence", "DET", "SEG", "TRA", "frames", "tracks", "seconds_per_frame")


_PICKS = {"C": "track.channel", "Z": "track.z"}  # the parameter that picks a plane along each axis


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
                f"{name}: `{_PICKS[axis]}`={value}, but axes {_axes_text(axes, shape)} have {lengths.get(axis, 1)} "
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
            f"pick one with `{_PICKS[a]}`=0..{dict(zip(axes, shape))[a] - 1}"
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
    """`track.gt`, else the ``NN_GT`` folder beside a CTC sequence folder ``NN``, else None."""
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


# === The pipeline ===


def _measure(
    frames: Iterable[np.ndarray],
    segment: Callable[[np.ndarray], np.ndarray] | None,
    scratch: Path | None,
    names: Sequence[str] | None,
    log: Callable[[str], None],
    n_frames: int | None,
) -> tuple[list[ObjectTable], np.ndarray | None]:
    """Pass 1: (object table of every frame, the last image or None for label frames).

    With ``segment``, each frame is an image: its instance labels go to
    ``scratch/TTTTT.tif`` and its objects get the image's mean intensity.
    """
    tables, last = [], None
    for t, frame in enumerate(frames):
        name = names[t] if names else ""
        if segment is None:
            tables.append(object_table(t, frame, name=name))
            continue
        labels = segment(frame)
        write_mask(scratch / f"{t:05d}.tif", labels)
        tables.append(object_table(t, labels, frame, name=name))
        last = frame
        if (t + 1) % 10 == 0 or t + 1 == n_frames:
            log(f"segmented frame {t + 1}/{n_frames or '?'} ({len(tables[-1].label)} objects)")
    return tables, last


def write_outputs(
    tracks: Tracks,
    frames: Iterable[np.ndarray],
    out_dir: str | Path,
    *,
    background: np.ndarray | None = None,
    pixel_size: float | None = None,
    frame_interval: float | None = None,
) -> dict[str, Path]:
    """Pass 2: write the CTC result and the motility tables and plot into ``out_dir``.

    Args:
        tracks: :class:`Tracks` from :func:`link`.
        frames: iterable of the same (H, W) label frames as pass 1, in order, read
            one at a time (e.g. a generator reading temporary label files).
        out_dir: str or Path; receives ``maskTTT.tif``, ``res_track.txt``, ``tracks.csv``,
            ``tracks_summary.csv`` and ``tracks.png``, each written atomically.
        background: optional (H, W) image under the trajectories in ``tracks.png``
            (default: the last frame's objects).
        pixel_size: float, micrometres per pixel; adds µm columns (default None).
        frame_interval: float, minutes between frames; adds per-minute speeds (default None).

    Returns:
        {"masks": out_dir, "res_track": ..., "tracks": ..., "summary": ..., "plot": ...}.
    """
    out_dir = Path(out_dir)
    last = None
    count = 0
    for t, labels in enumerate(frames):
        if t >= tracks.n_frames:
            raise ValueError(f"frames yields more than the {tracks.n_frames} tracked frames")
        last = tracks.relabel(t, labels)
        write_ctc_mask(out_dir, t, tracks.n_frames, last)
        count += 1
    if count != tracks.n_frames:
        raise ValueError(f"frames yielded {count} frames; {tracks.n_frames} were tracked")
    paths = {"masks": out_dir, "res_track": write_res_track(out_dir / "res_track.txt", tracks.lineage)}
    paths.update(write_track_tables(tracks, out_dir, pixel_size=pixel_size, frame_interval=frame_interval))
    paths["plot"] = plot_tracks(tracks, last > 0 if background is None else background, out_dir / "tracks.png")
    return paths


def track_frames(
    frames: Callable[[], Iterable[np.ndarray]],
    out_dir: str | Path,
    options: TrackConfig = TrackConfig(),
    *,
    segment: Callable[[np.ndarray], np.ndarray] | None = None,
    names: Sequence[str] | None = None,
    background: np.ndarray | None = None,
    pixel_size: float | None = None,
    source: str | None = None,
    log: Callable[[str], None] = print,
    n_frames: int | None = None,
) -> Tracks:
    """Track a time-lapse and write every output: pass 1, :func:`link`, pass 2 (see the module docstring).

    Args:
        frames: callable returning a fresh iterable of (H, W) frames in time order,
            e.g. ``lambda: (read_label(p) for p in paths)``: integer instance label
            frames (called twice), or images when ``segment`` is given (called once).
        out_dir: str or Path, the output folder (see :func:`write_outputs`).
        options: ``max_distance``, ``max_gap``, ``divisions`` (see :func:`link`) and
            ``frame_interval`` (minutes between frames: per-minute speeds).
        segment: optional callable, (H, W) image -> (H, W) integer instance labels;
            its labels wait in temporary files for pass 2.
        names: optional frame names (file paths) for error messages.
        background: optional (H, W) image under the trajectories in ``tracks.png``
            (default: the last image, or the last label frame's objects).
        pixel_size: float, micrometres per pixel; adds µm columns (default None).
        source: names the sequence in error messages (default: ``out_dir``).
        log: progress lines (every 10 segmented frames and the last of ``n_frames``).
        n_frames: the number of frames, if known (for the progress lines).

    Returns:
        :class:`Tracks`.
    """
    source = str(out_dir) if source is None else source
    temporary = tempfile.TemporaryDirectory(prefix="unet_tf-track-") if segment else contextlib.nullcontext()
    with temporary as scratch:
        scratch = Path(scratch) if scratch else None
        tables, last = _measure(frames(), segment, scratch, names, log, n_frames)
        tracks = link(
            tables,
            max_distance=options.max_distance,
            max_gap=options.max_gap,
            divisions=options.divisions,
            source=source,
        )
        again = frames() if segment is None else (read_label(scratch / f"{t:05d}.tif") for t in range(len(tables)))
        write_outputs(
            tracks,
            again,
            out_dir,
            background=last if background is None else background,
            pixel_size=pixel_size,
            frame_interval=options.frame_interval,
        )
    return tracks


# === From images: segment, track, score ===


def _segmenter(model: Any, config: PredictConfig) -> Callable[[np.ndarray], np.ndarray]:
    """image -> instance labels of ``model`` (:func:`predict_image`); an error for a model without objects."""

    def segment(image: np.ndarray) -> np.ndarray:
        result = predict_image(model, image, config)
        if result.instances is None:
            raise UserInputError(
                "`track`: needs objects: use an instance model (ctc, dsb2018, `data.target` instances) "
                "or `predict.split_touching`"
            )
        return result.instances

    return segment


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
    names = [str(p) for p in paths] if len(paths) == n else None
    t0 = time.perf_counter()
    tracks = track_frames(
        frames,
        out_dir,
        options,
        segment=_segmenter(model, replace(config, pixel_size=pixel_size)),  # one scale for every frame
        names=names,
        pixel_size=pixel_size,
        source=name,
        log=log,
        n_frames=n,
    )
    seconds = (time.perf_counter() - t0) / n
    row = {"sequence": name, "frames": n, "tracks": len(tracks.lineage), "seconds_per_frame": round(seconds, 3)}
    log(f"{n} frames, {row['tracks']} tracks ({seconds:.2f} s per frame); outputs in {out_dir}")
    if gt is not None:
        row.update(score_sequence(out_dir, gt))
        write_csv(out_dir / "tracking_metrics.csv", [row], TRACKING_COLUMNS)
        log(format_table([row], TRACKING_COLUMNS, digits=4))
    return row
