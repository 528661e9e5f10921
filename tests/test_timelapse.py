"""predict.py --track's path: frames -> predict_image -> instances -> tracks -> CTC files and scores."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unet_tf.config import PredictConfig, TrackConfig
from unet_tf.errors import UserInputError
from unet_tf.model_file import ModelInfo
from unet_tf.timelapse import track_sequence


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
