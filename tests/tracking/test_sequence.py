"""The tracking pipeline: frames -> (predict_image -> instances) -> tracks -> CTC files and scores."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unet_tf.config import PredictConfig, TrackConfig
from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo
from unet_tf.tracking.sequence import track_frames, track_sequence


class DiscModel:
    """A stand-in network that 'predicts' bright discs perfectly: interior, and a 1 px boundary ring."""

    info = ModelInfo(
        (0, 1, 2),
        ("background", "interior", "boundary"),
        size_divisor=4,
        target="instances",
        normalize=ModelInfo((0, 1), ("a", "b")).normalize,
    )

    def __call__(self, batch):
        fg = batch[..., 0] > 0.5
        interior = np.stack([ndimage.binary_erosion(f, iterations=1) for f in fg])
        out = np.zeros(batch.shape[:3] + (3,), np.float32)
        out[..., 1] = interior
        out[..., 2] = fg & ~interior
        out[..., 0] = ~fg
        return out


def movie(tmp_path, sizes=None):
    """Three discs moving right by 2 px a frame; frames 0..5, with CTC ground truth."""
    seq, gt = tmp_path / "01", tmp_path / "01_GT"
    for d in (seq, gt / "TRA", gt / "SEG"):
        d.mkdir(parents=True)
    yy, xx = np.mgrid[:64, :64]
    for t in range(6):
        labels = np.zeros((64, 64), np.uint16)
        for k, (cy, cx) in enumerate([(12, 10), (32, 20), (50, 12)], 1):
            labels[(yy - cy) ** 2 + (xx - cx - 2 * t) ** 2 <= 25] = k
        shape = sizes[t] if sizes else (64, 64)
        image = np.zeros(shape, np.uint8)
        image[:64, :64] = (labels > 0) * 200 + 20
        tifffile.imwrite(seq / f"t{t:03d}.tif", image)
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", labels)
        tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", labels)
    (gt / "TRA" / "man_track.txt").write_text("1 0 5 0\n2 0 5 0\n3 0 5 0\n")
    return seq


def test_known_tracks_score_one(tmp_path):
    seq = movie(tmp_path)
    out = tmp_path / "res"
    row = track_sequence(DiscModel(), [str(seq)], out, PredictConfig(tile=32, overlap=8), TrackConfig(), log=print)
    assert row["frames"] == 6 and row["tracks"] == 3
    assert row["DET"] == pytest.approx(1.0) and row["SEG"] == pytest.approx(1.0) and row["TRA"] == pytest.approx(1.0)
    assert sorted(p.name for p in out.glob("mask*.tif")) == [f"mask{t:03d}.tif" for t in range(6)]
    assert (out / "tracking_metrics.csv").is_file() and (out / "tracks.png").is_file()
    lines = sorted((out / "res_track.txt").read_text().split("\n"))
    assert [line.split()[1:] for line in lines if line] == [["0", "5", "0"]] * 3


def test_frames_of_different_sizes_are_an_error(tmp_path):
    seq = movie(tmp_path, sizes=[(64, 64)] * 5 + [(64, 70)])
    with pytest.raises(UserInputError, match="size"):
        track_sequence(DiscModel(), [str(seq)], tmp_path / "res", PredictConfig(tile=32, overlap=8), log=print)
    assert not list((tmp_path / "res").glob("*.tif"))  # nothing half-written


def test_gt_folder_without_man_track_is_an_error(tmp_path):
    seq = movie(tmp_path)
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserInputError, match="no TRA/man_track.txt"):
        track_sequence(
            DiscModel(),
            [str(seq)],
            tmp_path / "res",
            PredictConfig(tile=32, overlap=8),
            TrackConfig(gt=str(tmp_path / "bad")),
            log=print,
        )


# --- frame order and hyperstacks (issue: tracking scrambled time / C or Z planes as time) ----------------

CENTRES = [(12, 10), (32, 20), (50, 12)]


def disc_frame(t: int, shift: int = 2) -> np.ndarray:
    """(64, 64) uint8: the three discs of :func:`movie` at time ``t``, moved right by ``shift`` px a frame."""
    yy, xx = np.mgrid[:64, :64]
    image = np.full((64, 64), 20, np.uint8)
    for cy, cx in CENTRES:
        image[(yy - cy) ** 2 + (xx - cx - shift * t) ** 2 <= 25] = 220
    return image


def run_track(tmp_path, inputs, options=TrackConfig()):
    lines = []
    config = PredictConfig(tile=32, overlap=8)
    row = track_sequence(DiscModel(), [str(i) for i in inputs], tmp_path / "res", config, options, lines.append)
    tracks = np.genfromtxt(tmp_path / "res" / "tracks.csv", delimiter=",", names=True)
    return row, tracks, "\n".join(lines)


def assert_steady_motion(tracks, n_frames: int, shift: int = 2):
    """Three tracks over all frames, each centroid ``shift`` px right of the previous frame's."""
    assert len(np.unique(tracks["track"])) == 3
    for track in np.unique(tracks["track"]):
        rows = np.sort(tracks[tracks["track"] == track], order="frame")
        assert list(rows["frame"]) == list(range(n_frames))
        np.testing.assert_allclose(np.diff(rows["x"]), shift, atol=0.01)


def test_unpadded_frame_numbers_are_tracked_in_numeric_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(1, 13):  # frame_1 .. frame_12: string order would put frame_10 after frame_1
        tifffile.imwrite(folder / f"frame_{t}.tif", disc_frame(t))
    row, tracks, log = run_track(tmp_path, [folder])
    assert row["frames"] == 12 and row["tracks"] == 3
    assert_steady_motion(tracks, 12)
    assert "natural name order: frame_1.tif .. frame_12.tif" in log


def tcyx(t: int = 5) -> np.ndarray:
    """(T, 2, 64, 64): channel 0 the discs moving right by 2 px a frame, channel 1 by 3 px."""
    return np.stack([np.stack([disc_frame(i), disc_frame(i, shift=3)]) for i in range(t)])


@pytest.mark.parametrize("writer", ["imagej", "ome", "tifffile"])
def test_tcyx_hyperstack_needs_a_channel_and_gives_t_frames(tmp_path, writer):
    path = tmp_path / ("movie.ome.tif" if writer == "ome" else "movie.tif")
    kwargs = {"imagej": {"imagej": True}, "ome": {"ome": True}, "tifffile": {}}[writer]
    tifffile.imwrite(path, tcyx(), metadata={"axes": "TCYX"}, **kwargs)
    with pytest.raises(UserInputError) as error:
        run_track(tmp_path, [path])
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "TCYX" in message and "C=2" in message
    assert "`track.channel`=0..1" in message
    row, tracks, log = run_track(tmp_path, [path], TrackConfig(channel=0))
    assert row["frames"] == 5 and row["tracks"] == 3
    assert_steady_motion(tracks, 5)
    assert "5 frames along T" in log and "channel=0" in log
    row, tracks, _ = run_track(tmp_path, [path], TrackConfig(channel=1))
    assert row["frames"] == 5
    assert_steady_motion(tracks, 5, shift=3)


def test_tzyx_hyperstack_needs_a_z_plane(tmp_path):
    path = tmp_path / "tz.tif"
    stack = np.stack([np.stack([disc_frame(i), np.zeros((64, 64), np.uint8), disc_frame(i)]) for i in range(4)])
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(UserInputError, match=r"tz\.tif: axes TZYX \(T=4, Z=3\).*`track\.z`=0\.\.2"):
        run_track(tmp_path, [path])
    with pytest.raises(UserInputError, match=r"`track\.z`=3, but .* 3 plane\(s\) along Z"):
        run_track(tmp_path, [path], TrackConfig(z=3))
    row, tracks, _ = run_track(tmp_path, [path], TrackConfig(z=2))
    assert row["frames"] == 4
    assert_steady_motion(tracks, 4)


def test_plain_multipage_tiff_stays_a_stack_of_frames(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.stack([disc_frame(i) for i in range(6)]), metadata=None)
    row, tracks, log = run_track(tmp_path, [path])
    assert row["frames"] == 6
    assert_steady_motion(tracks, 6)
    assert "6 frames along I" in log


def test_time_planes_positions_by_hand():
    from unet_tf.tracking.sequence import time_planes

    # T=3, C=2, Z=4 in C order: plane (t, c, z) is at t*8 + c*4 + z
    assert time_planes("TCZ", (3, 2, 4), "f", channel=1, z=2) == ([6, 14, 22], "T")
    assert time_planes("ZT", (4, 3), "f", z=1) == ([3, 4, 5], "T")
    assert time_planes("I", (7,), "f") == (list(range(7)), "I")
    assert time_planes("CZ", (2, 5), "f", channel=1) == ([5, 6, 7, 8, 9], "Z")  # the only axis left is time
    assert time_planes("", (), "f") == ([0], "")
    with pytest.raises(UserInputError, match="no parameter picks along Q"):
        time_planes("TQ", (3, 2), "f")


class EverythingModel(DiscModel):
    """A weak network: every pixel is 'interior', so each frame is one object covering the whole frame."""

    def __call__(self, batch):
        out = np.zeros(batch.shape[:3] + (3,), np.float32)
        out[..., 1] = 1.0
        return out


def test_whole_frame_objects_are_written_and_scored(tmp_path):
    seq = movie(tmp_path)
    out = tmp_path / "res"
    row = track_sequence(EverythingModel(), [str(seq)], out, PredictConfig(tile=32, overlap=8), log=print)
    assert row["frames"] == 6 and row["tracks"] == 1
    assert all(tifffile.imread(out / f"mask{t:03d}.tif").min() == 1 for t in range(6))
    # DET by hand: one object per frame to split into 3 (2 splits x 5) against 3 markers (x 10), 6 frames
    assert row["DET"] == pytest.approx(1 - 6 * 2 * 5 / (6 * 3 * 10))
    assert (out / "tracking_metrics.csv").is_file()


def test_expand_inputs_natural_order_for_folders_and_globs(tmp_path):
    from unet_tf.prediction.inputs import expand_inputs

    for name in ("img_10.tif", "img_2.tif", "img_1.tif", "img_02b.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((4, 4), np.uint8))
    expected = ["img_1.tif", "img_2.tif", "img_02b.tif", "img_10.tif"]
    assert [p.name for p in expand_inputs([str(tmp_path)])] == expected
    assert [p.name for p in expand_inputs([str(tmp_path / "img_*.tif")])] == expected


class SemanticModel(DiscModel):
    """A two-class model without instance output (and no ``split_touching``): nothing to track."""

    info = ModelInfo((0, 1), ("background", "cell"), size_divisor=4, normalize=ModelInfo((0, 1), ("a", "b")).normalize)

    def __call__(self, batch):
        return (batch[..., :1] > 0.5).astype(np.float32)


def test_a_model_without_objects_is_an_error_in_library_words(tmp_path):
    seq = movie(tmp_path)
    with pytest.raises(UserInputError, match="`track`: needs objects.*`predict.split_touching`"):
        track_sequence(SemanticModel(), [str(seq)], tmp_path / "res", PredictConfig(tile=32, overlap=8), log=print)


def test_images_and_label_frames_go_through_one_pipeline(tmp_path):
    """track_frames on images with ``segment`` writes what it writes for the segmented label frames."""
    labels = [tifffile.imread(p) for p in sorted((movie(tmp_path).parent / "01_GT" / "SEG").glob("*.tif"))]
    images = [(frame > 0).astype(np.uint8) * 200 + 20 for frame in labels]
    options = TrackConfig(frame_interval=3.0)
    by_labels = track_frames(lambda: iter(labels), tmp_path / "labels", options, background=images[-1])
    segmented = iter(labels)
    by_images = track_frames(lambda: iter(images), tmp_path / "images", options, segment=lambda image: next(segmented))
    np.testing.assert_array_equal(by_images.lineage, by_labels.lineage)
    for name in [f"mask{t:03d}.tif" for t in range(6)] + ["res_track.txt", "tracks_summary.csv", "tracks.png"]:
        assert (tmp_path / "images" / name).read_bytes() == (tmp_path / "labels" / name).read_bytes(), name
