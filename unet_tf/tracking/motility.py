"""Motility tables and the trajectory plot of linked tracks (:class:`unet_tf.tracking.link.Tracks`).

Pass 2 of the tracking pipeline (:func:`unet_tf.tracking.sequence.write_outputs`)
writes them beside the CTC result.

Definitions (pixels; row ``y``, column ``x``; a track is an unbroken run of
frames, see :mod:`unet_tf.tracking.link`):

* ``displacement_px``: centroid distance from the track's previous frame; empty
  on a track's first frame.
* ``path_length_px``: sum of a track's displacements; ``net_displacement_px``:
  distance from its first to its last centroid.
* ``mean_speed_px_per_frame = path_length_px / (length - 1)``; empty for a
  one-frame track. ``straightness = net / path`` in [0, 1]; empty when the path
  is 0.
* With ``pixel_size`` (µm per pixel) every length gets a ``_um`` twin (areas
  ``_um2``); with ``frame_interval`` (minutes between frames) the speeds get a
  ``_per_min`` twin (``speed_um_per_min`` when both are given, else
  ``speed_px_per_min``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unet_tf.io.tables import write_csv
from unet_tf.io.writers import atomic_path
from unet_tf.tracking.link import Tracks


def _steps(objects: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) distance from the previous row of the same track; NaN on each track's first row."""
    step = np.full(len(objects["track"]), np.nan)
    if len(step) > 1:
        same = objects["track"][1:] == objects["track"][:-1]
        dist = np.hypot(np.diff(objects["y"]), np.diff(objects["x"]))
        step[1:][same] = dist[same]
    return step


def _num(value: float) -> float | None:
    """NaN -> None (an empty CSV cell)."""
    return None if value is None or not np.isfinite(value) else float(value)


def _length_unit(pixel_size: float | None) -> str:
    return "um" if pixel_size else "px"


def track_rows(
    tracks: Tracks, *, pixel_size: float | None = None, frame_interval: float | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of ``tracks.csv`` (one per object, by track then frame) and their columns.

    Args:
        tracks: linked tracks.
        pixel_size: float, micrometres per pixel, or None (no µm columns).
        frame_interval: float, minutes between frames, or None (no speed column).
    """
    obj = tracks.objects
    step = _steps(obj)
    columns = ["track", "frame", "label", "y", "x", "area", "displacement_px"]
    if "mean_intensity" in obj:
        columns.insert(6, "mean_intensity")
    if pixel_size:
        columns += ["y_um", "x_um", "area_um2", "displacement_um"]
    if frame_interval:
        columns.append(f"speed_{_length_unit(pixel_size)}_per_min")
    rows = []
    for i in range(len(obj["track"])):
        row = {c: obj[c][i].item() for c in ("track", "frame", "label", "y", "x", "area", "mean_intensity") if c in obj}
        row["displacement_px"] = _num(step[i])
        if pixel_size:
            row.update(
                y_um=row["y"] * pixel_size,
                x_um=row["x"] * pixel_size,
                area_um2=row["area"] * pixel_size**2,
                displacement_um=_num(step[i] * pixel_size),
            )
        if frame_interval:
            row[columns[-1]] = _num(step[i] * (pixel_size or 1.0) / frame_interval)
        rows.append(row)
    return rows, columns


def _summary_row(tracks: Tracks, index: int, step: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    label, first, last, parent = (int(v) for v in tracks.lineage[index])
    y, x = tracks.objects["y"][rows], tracks.objects["x"][rows]
    path = float(np.nansum(step[rows]))
    net = float(np.hypot(y[-1] - y[0], x[-1] - x[0]))
    length = int(rows.size)
    return {
        "track": label,
        "parent": parent,
        "start": str(tracks.start[index]),
        "first_frame": first,
        "last_frame": last,
        "length": length,
        "path_length_px": path,
        "net_displacement_px": net,
        "mean_speed_px_per_frame": path / (length - 1) if length > 1 else None,
        "straightness": net / path if path > 0 else None,
    }


def summary_rows(
    tracks: Tracks, *, pixel_size: float | None = None, frame_interval: float | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of ``tracks_summary.csv`` (one per track, by track id) and their columns.

    Args:
        tracks: linked tracks.
        pixel_size: float, micrometres per pixel, or None.
        frame_interval: float, minutes between frames, or None.
    """
    columns = [
        "track",
        "parent",
        "start",
        "first_frame",
        "last_frame",
        "length",
        "path_length_px",
        "net_displacement_px",
        "mean_speed_px_per_frame",
        "straightness",
    ]
    if pixel_size:
        columns += ["path_length_um", "net_displacement_um", "mean_speed_um_per_frame"]
    speed_min = f"mean_speed_{_length_unit(pixel_size)}_per_min"
    if frame_interval:
        columns.append(speed_min)
    step = _steps(tracks.objects)
    bounds = np.searchsorted(tracks.objects["track"], tracks.lineage[:, 0], side="left")
    ends = np.append(bounds[1:], len(step))
    rows = []
    for index, (lo, hi) in enumerate(zip(bounds, ends)):
        row = _summary_row(tracks, index, step, np.arange(lo, hi))
        speed = row["mean_speed_px_per_frame"]
        if pixel_size:
            row.update(
                path_length_um=row["path_length_px"] * pixel_size,
                net_displacement_um=row["net_displacement_px"] * pixel_size,
                mean_speed_um_per_frame=None if speed is None else speed * pixel_size,
            )
        if frame_interval:
            row[speed_min] = None if speed is None else speed * (pixel_size or 1.0) / frame_interval
        rows.append(row)
    return rows, columns


def write_track_tables(
    tracks: Tracks, out_dir: str | Path, *, pixel_size: float | None = None, frame_interval: float | None = None
) -> dict[str, Path]:
    """Write ``tracks.csv`` and ``tracks_summary.csv`` into ``out_dir`` atomically.

    Returns:
        {"tracks": path, "summary": path}.
    """
    out_dir = Path(out_dir)
    per_object = track_rows(tracks, pixel_size=pixel_size, frame_interval=frame_interval)
    per_track = summary_rows(tracks, pixel_size=pixel_size, frame_interval=frame_interval)
    return {
        "tracks": write_csv(out_dir / "tracks.csv", *per_object),
        "summary": write_csv(out_dir / "tracks_summary.csv", *per_track),
    }


def plot_tracks(tracks: Tracks, background: np.ndarray, path: str | Path) -> Path:
    """Draw every trajectory over ``background`` (e.g. the last frame) as a PNG, atomically.

    Each track is a polyline of its centroids in a colour chosen by its id (tab20);
    a daughter's first point is joined to its parent's last point by a thin line.

    Args:
        tracks: linked tracks.
        background: (H, W) numeric or boolean image, shown in gray.
        path: str or Path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obj = tracks.objects
    height, width = tracks.shape
    scale = 8.0 / max(height, width)
    fig, ax = plt.subplots(figsize=(width * scale, height * scale), dpi=100)
    image = np.asarray(background, dtype=np.float32)
    low, high = np.percentile(image, [1.0, 99.8]) if image.size else (0.0, 1.0)
    # shown at 60 % brightness so the coloured lines stand out on bright nuclei
    ax.imshow(image, cmap="gray", vmin=low, vmax=low + (max(high - low, 1e-6)) / 0.6, interpolation="nearest")
    colours = plt.get_cmap("tab20")
    last_point: dict[int, tuple[float, float]] = {}
    for label, _, _, parent in tracks.lineage:
        rows = obj["track"] == label
        y, x = obj["y"][rows], obj["x"][rows]
        colour = colours(int(label) % 20)
        if parent in last_point:
            py, px = last_point[int(parent)]
            ax.plot([px, x[0]], [py, y[0]], color=colour, linewidth=0.8, linestyle=":")
        ax.plot(x, y, color=colour, linewidth=2.0)
        ax.plot(x[-1:], y[-1:], color=colour, marker="o", markersize=3)
        last_point[int(label)] = (float(y[-1]), float(x[-1]))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
