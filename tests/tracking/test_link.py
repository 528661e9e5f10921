"""Tracking: object tables, laptrack linking, CTC result files, motility tables.

The synthetic movie has four discs on known straight paths; disc C divides
into two daughters between frames 3 and 4. Instance labels are chosen so that
the expected track ids follow from the documented numbering rule (first frame,
then label order): B=10 -> 1, D=20 -> 2, C=30 -> 3, A=40 -> 4, daughters 31 -> 5
and 32 -> 6.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from _helpers import LINEAGE, N_FRAMES, SIZE, TRACK_OF_LABEL, movie, movie_centres

from unet_tf.config import TrackConfig
from unet_tf.errors import UserInputError
from unet_tf.tracking import ctc, motility
from unet_tf.tracking import link as tracking
from unet_tf.tracking.sequence import track_frames


def _link(frames, **kwargs) -> tracking.Tracks:
    return tracking.link([tracking.object_table(t, f) for t, f in enumerate(frames)], **kwargs)


def test_object_table_hand_computed():
    labels = np.zeros((6, 7), np.int32)
    labels[1:3, 2:6] = 9  # 2 x 4 block: centroid (1.5, 3.5), area 8
    labels[5, 0] = 4
    intensity = np.arange(42, dtype=np.float64).reshape(6, 7)
    table = tracking.object_table(3, labels, intensity, name="t003.tif")
    assert table.frame == 3 and table.shape == (6, 7)
    np.testing.assert_array_equal(table.label, [4, 9])
    np.testing.assert_allclose(table.y, [5.0, 1.5])
    np.testing.assert_allclose(table.x, [0.0, 3.5])
    np.testing.assert_array_equal(table.area, [1, 8])
    block = intensity[1:3, 2:6].mean()
    np.testing.assert_allclose(table.mean_intensity, [35.0, block])


def test_links_known_tracks_and_division():
    tracks = _link(movie())
    np.testing.assert_array_equal(tracks.lineage, LINEAGE)
    assert list(tracks.start) == ["new"] * 4 + ["division"] * 2
    expected = [TRACK_OF_LABEL[label] for label in tracks.objects["label"]]
    np.testing.assert_array_equal(tracks.objects["track"], expected)
    frame5 = tracks.relabel(5, movie()[5])
    for label, centre in movie_centres(5).items():
        assert frame5[centre] == TRACK_OF_LABEL[label]
    assert frame5[0, 0] == 0 and frame5.dtype == np.uint16


def test_division_off_gives_unparented_daughter():
    tracks = _link(movie(), divisions=False)
    assert all(parent == 0 for parent in tracks.lineage[:, 3])
    # one daughter continues the mother's track, the other starts fresh
    assert len(tracks.lineage) == 5


def test_gap_closed_as_child_track():
    frames = movie(skip={3: 40})  # disc A missing in frame 3
    tracks = _link(frames, max_gap=1)
    # frame 4's new tracks in label order: daughters 31 -> 5, 32 -> 6, A (40) -> 7
    track_a = tracks.objects["track"][tracks.objects["label"] == 40]
    np.testing.assert_array_equal(track_a, [4, 4, 4, 7, 7, 7, 7])
    np.testing.assert_array_equal(tracks.lineage[[3, 6]], [[4, 0, 2, 0], [7, 4, 7, 4]])
    assert tracks.start[6] == "gap"
    unclosed = _link(frames, max_gap=0)
    assert unclosed.lineage[6, 3] == 0 and unclosed.start[6] == "new"


def test_single_frame_gives_one_frame_tracks():
    tracks = _link(movie()[:1])
    np.testing.assert_array_equal(tracks.lineage, [[1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0], [4, 0, 0, 0]])


def test_empty_frames_are_allowed_inside_a_sequence():
    frames = movie()[:3] + [np.zeros((SIZE, SIZE), np.uint16)] + movie()[4:]
    tracks = _link(frames, max_gap=0)
    assert (tracks.objects["frame"] == 3).sum() == 0
    assert len(tracks.lineage) == 4 + 5  # everything restarts after the empty frame


def test_frames_of_different_sizes_are_an_error():
    tables = [tracking.object_table(t, f, name=f"t{t:03d}.tif") for t, f in enumerate(movie()[:3])]
    tables.append(tracking.object_table(3, np.zeros((SIZE, SIZE + 1), np.uint16), name="t003.tif"))
    with pytest.raises(UserInputError, match=r"frame 3 \(t003.tif\): size 96x97 differs from frame 0"):
        tracking.link(tables)


def test_empty_sequence_is_an_error(tmp_path):
    with pytest.raises(UserInputError, match="no frames"):
        track_frames(lambda: iter([]), tmp_path / "res")
    assert not (tmp_path / "res").exists()


def test_non_integer_labels_are_an_error():
    with pytest.raises(UserInputError, match="frame 2 \\(a.tif\\): expected a 2-D integer"):
        tracking.object_table(2, np.zeros((4, 4), np.float32), name="a.tif")


def test_negative_labels_are_an_error():
    with pytest.raises(UserInputError, match="frame 0: negative object id -1"):
        tracking.object_table(0, np.full((4, 4), -1, np.int32))


def test_mean_intensity_reaches_the_track_table():
    frames = movie()[:2]
    tables = [tracking.object_table(t, f, f.astype(np.float32) * 2) for t, f in enumerate(frames)]
    tracks = tracking.link(tables)
    np.testing.assert_allclose(tracks.objects["mean_intensity"], 2.0 * tracks.objects["label"])
    rows, columns = motility.track_rows(tracks)
    assert "mean_intensity" in columns and rows[0]["mean_intensity"] == 2.0 * rows[0]["label"]


def test_relabel_refuses_a_changed_frame():
    tracks = _link(movie())
    changed = movie()[2]
    changed[0, 0] = 99
    with pytest.raises(ValueError, match="frame 2"):
        tracks.relabel(2, changed)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_and_motility_tables(tmp_path):
    out = tmp_path / "01_RES"
    tracks = track_frames(lambda: iter(movie()), out, TrackConfig(frame_interval=2.0), pixel_size=0.5)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [ctc.mask_name(t, N_FRAMES) for t in range(N_FRAMES)]
        + ["res_track.txt", "tracks.csv", "tracks_summary.csv", "tracks.png"]
    )
    rows = [r for r in _read_csv(out / "tracks.csv") if r["track"] == "4"]  # disc A: 5 px per frame
    assert [r["frame"] for r in rows] == [str(t) for t in range(N_FRAMES)]
    assert rows[0]["displacement_px"] == "" and float(rows[1]["displacement_px"]) == pytest.approx(5.0)
    assert float(rows[1]["displacement_um"]) == pytest.approx(2.5)
    assert float(rows[1]["speed_um_per_min"]) == pytest.approx(1.25)
    summary = {r["track"]: r for r in _read_csv(out / "tracks_summary.csv")}
    a, d, daughter = summary["4"], summary["2"], summary["6"]
    assert float(a["path_length_px"]) == pytest.approx(35.0) and float(a["straightness"]) == pytest.approx(1.0)
    assert float(a["mean_speed_um_per_min"]) == pytest.approx(1.25)
    assert float(d["path_length_px"]) == 0.0 and d["straightness"] == ""  # the disc that stays put
    assert (daughter["parent"], daughter["start"], daughter["length"]) == ("3", "division", "4")
    assert float(daughter["net_displacement_px"]) == pytest.approx(3 * np.hypot(4, 2))
    assert len(tracks.lineage) == 6
    import matplotlib.pyplot as plt

    png = plt.imread(out / "tracks.png")[..., :3]
    assert png.shape[:2] == (800, 800)
    coloured = np.ptp(png, axis=-1) > 0.2  # trajectories are the only non-gray pixels
    assert 200 < coloured.sum() < 0.1 * coloured.size
