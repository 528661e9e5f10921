"""CTC result files and scores through the real scorer (py-ctcmetrics).

The ground truth is written here from the synthetic movie's known paths and a
hand-written lineage, independently of the tracking code.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _helpers import LINEAGE, N_FRAMES, TRACK_OF_LABEL, movie

from unet_tf.config import TrackConfig
from unet_tf.errors import UserInputError
from unet_tf.tracking import ctc
from unet_tf.tracking.sequence import track_frames

pytest.importorskip("ctc_metrics")


def write_gt(gt_dir: Path, frames, track_of_label, lineage, seg_frames=(0, 4, 7)) -> Path:
    """A CTC ground-truth folder: TRA markers (whole discs) every frame, SEG on some frames."""
    (gt_dir / "TRA").mkdir(parents=True)
    (gt_dir / "SEG").mkdir()
    for t, frame in enumerate(frames):
        ids = np.zeros_like(frame)
        for label, track in track_of_label(t).items():
            ids[frame == label] = track
        tifffile.imwrite(gt_dir / "TRA" / f"man_track{t:03d}.tif", ids)
        if t in seg_frames:
            tifffile.imwrite(gt_dir / "SEG" / f"man_seg{t:03d}.tif", ids)
    (gt_dir / "TRA" / "man_track.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in lineage))
    return gt_dir


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctc")
    gt = write_gt(root / "01_GT", movie(), lambda t: TRACK_OF_LABEL, LINEAGE)
    tracks = track_frames(lambda: iter(movie()), root / "01_RES")
    return root / "01_RES", gt, tracks


def test_tracking_the_ground_truth_scores_one(result):
    res, gt, _ = result
    assert ctc.score_sequence(res, gt) == {"DET": 1.0, "SEG": 1.0, "TRA": 1.0}


def test_written_files_round_trip_through_the_scorers_reader(result):
    from ctc_metrics.utils.filesystem import parse_masks, read_tracking_file

    res, _, tracks = result
    np.testing.assert_array_equal(read_tracking_file(str(res / "res_track.txt")), LINEAGE)
    np.testing.assert_array_equal(ctc.read_res_track(res / "res_track.txt"), tracks.lineage)
    paths = parse_masks(str(res))
    assert [Path(p).name for p in paths] == [f"mask{t:03d}.tif" for t in range(N_FRAMES)]
    for t, (path, frame) in enumerate(zip(paths, movie())):
        mask = tifffile.imread(path)
        assert mask.dtype == np.uint16
        np.testing.assert_array_equal(mask, tracks.relabel(t, frame))


def test_missed_division_costs_tra_not_det(tmp_path, result):
    _, gt, _ = result
    track_frames(lambda: iter(movie()), tmp_path / "res", TrackConfig(divisions=False))
    scores = ctc.score_sequence(tmp_path / "res", gt)
    assert scores["DET"] == 1.0 and scores["SEG"] == 1.0
    assert 0.9 < scores["TRA"] < 1.0


def test_closed_gap_is_a_valid_ctc_result(tmp_path):
    frames = movie(skip={3: 40})
    lineage = LINEAGE[:6] + [[7, 4, 7, 4]]
    lineage[3] = [4, 0, 2, 0]
    gt = write_gt(tmp_path / "01_GT", frames, lambda t: {**TRACK_OF_LABEL, 40: 4 if t < 3 else 7}, lineage)
    track_frames(lambda: iter(frames), tmp_path / "res", TrackConfig(max_gap=1))
    assert ctc.score_sequence(tmp_path / "res", gt) == {"DET": 1.0, "SEG": 1.0, "TRA": 1.0}
    # the same track id across the gap breaks the CTC rules; the scorer says so
    shutil.copytree(tmp_path / "res", tmp_path / "same_id")
    for t in range(4, N_FRAMES):
        path = tmp_path / "same_id" / f"mask{t:03d}.tif"
        mask = tifffile.imread(path)
        tifffile.imwrite(path, np.where(mask == 7, 4, mask).astype(np.uint16))
    ctc.write_res_track(tmp_path / "same_id" / "res_track.txt", LINEAGE)  # track 4: frames 0-7
    with pytest.raises(UserInputError, match="not a valid CTC result"):
        ctc.score_sequence(tmp_path / "same_id", gt)


def test_gt_without_man_track_is_an_error(tmp_path, result):
    res, gt, _ = result
    shutil.copytree(gt, tmp_path / "02_GT", ignore=shutil.ignore_patterns("man_track.txt"))
    with pytest.raises(UserInputError, match=r"02_GT: not a CTC ground-truth folder \(no TRA/man_track.txt\)"):
        ctc.score_sequence(res, tmp_path / "02_GT")


def test_frame_count_mismatch_is_an_error(tmp_path, result):
    res, gt, _ = result
    shutil.copytree(res, tmp_path / "res")
    (tmp_path / "res" / "mask007.tif").unlink()
    with pytest.raises(UserInputError, match="has 7 mask"):
        ctc.score_sequence(tmp_path / "res", gt)


def _blocks(rng, values, grid=(6, 5), block=(5, 4)) -> np.ndarray:
    """A label mask of random rectangles: a (6, 5) grid of ``values`` blown up to (30, 20)."""
    return np.kron(rng.choice(values, size=grid), np.ones(block, np.int64)).astype(np.uint16)


def test_match_masks_equals_py_ctcmetrics_match_on_masks_with_background(tmp_path):
    from ctc_metrics.utils.representations import match

    rng = np.random.default_rng(0)
    for trial in range(5):
        ref = _blocks(rng, [0, 3, 7, 40])
        comp = np.roll(_blocks(rng, [0, 5, 7, 41, 900]), trial, axis=1)  # 5, 41, 900 absent from ref
        comp[0, 0] = 0  # their match needs a background pixel in both masks
        ref[0, 0] = 0
        tifffile.imwrite(tmp_path / "ref.tif", ref)
        tifffile.imwrite(tmp_path / "comp.tif", comp)
        ours = ctc.match_masks(str(tmp_path / "ref.tif"), str(tmp_path / "comp.tif"))
        theirs = match(str(tmp_path / "ref.tif"), str(tmp_path / "comp.tif"))
        assert ours[:4] == tuple(theirs[:4])
        np.testing.assert_allclose(ours[4], theirs[4])


def test_object_covering_the_whole_frame_is_matched_not_dropped(tmp_path):
    ref = np.zeros((10, 10), np.uint16)
    ref[1:5, 1:5], ref[6:9, 6:9] = 1, 2  # 16 and 9 px
    tifffile.imwrite(tmp_path / "ref.tif", ref)
    tifffile.imwrite(tmp_path / "comp.tif", np.full((10, 10), 4, np.uint16))  # no background pixel
    labels_ref, labels_comp, mapped_ref, mapped_comp, iou = ctc.match_masks(
        str(tmp_path / "ref.tif"), str(tmp_path / "comp.tif")
    )
    assert (labels_ref, labels_comp, mapped_ref, mapped_comp) == ([1, 2], [4], [1, 2], [4, 4])
    assert iou == pytest.approx([16 / 100, 9 / 100])


def test_result_of_whole_frame_objects_is_scored(tmp_path, result):
    """A weak model's frames, each one object covering every pixel: a valid result with low scores."""
    _, gt, _ = result
    res = tmp_path / "res"
    res.mkdir()
    for t in range(N_FRAMES):
        ctc.write_ctc_mask(res, t, N_FRAMES, np.ones(movie()[0].shape, np.uint16))
    ctc.write_res_track(res / "res_track.txt", [[1, 0, N_FRAMES - 1, 0]])
    scores = ctc.score_sequence(res, gt)
    # DET by hand: per frame, the one object must be split into k (5 per split), 36 markers (10 per marker)
    k = [len(np.unique(frame)) - 1 for frame in movie()]
    assert scores["DET"] == pytest.approx(1 - 5 * sum(n - 1 for n in k) / (10 * sum(k)))
    # SEG: every reference nucleus (one disc) is matched with IoU = its area / the frame's area
    disc_area = np.count_nonzero(movie()[0] == 40)
    assert scores["SEG"] == pytest.approx(disc_area / movie()[0].size)
    assert 0 < scores["TRA"] < 1


def test_mask_names_pad_to_three_or_four_digits():
    assert ctc.mask_name(7, 92) == "mask007.tif"
    assert ctc.mask_name(998, 999) == "mask998.tif"
    assert ctc.mask_name(7, 1000) == "mask0007.tif"


def _gowt1_gt(sequence: str) -> Path:
    root = os.environ.get("UNET_TF_DATA")
    gt = Path(root or "/nonexistent") / "Fluo-N2DH-GOWT1" / f"{sequence}_GT"
    if not (gt / "TRA" / "man_track.txt").is_file():
        pytest.skip("UNET_TF_DATA/Fluo-N2DH-GOWT1 not available")
    return gt


@pytest.mark.slow
def test_real_ground_truth_against_itself(tmp_path):
    """GOWT1 02: the TRA markers as the result give DET = TRA = 1 (SEG is low: markers are small)."""
    gt = _gowt1_gt("02")
    res = tmp_path / "02_RES"
    res.mkdir()
    for path in sorted((gt / "TRA").glob("man_track*.tif")):
        os.symlink(path, res / path.name.replace("man_track", "mask"))
    shutil.copy(gt / "TRA" / "man_track.txt", res / "res_track.txt")
    start = time.perf_counter()
    scores = ctc.score_sequence(res, gt)
    print("SCORES", scores)
    print(f"GOWT1 02 GT vs itself: {scores} in {time.perf_counter() - start:.1f} s")
    assert scores["DET"] == 1.0 and scores["TRA"] == 1.0
    assert 0.0 < scores["SEG"] < 1.0
