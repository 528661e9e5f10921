"""Cell Tracking Challenge (CTC) result files and the DET / SEG / TRA scores.

A CTC result folder (``NN_RES``) holds, for frames ``t = 0 .. T-1``:

* ``maskTTT.tif``: uint16 (H, W), pixel value = track id, 0 = background.
  ``TTT`` is zero-padded to 3 digits, or 4 when the sequence has more than 999
  frames (the CTC naming conventions).
* ``res_track.txt``: one line ``L B E P`` per track: label, first frame, last
  frame (both 0-based, inclusive), parent label (0 = none).

A CTC track has no gaps: its label is present in every frame from B to E. An
object that is missed for a few frames and found again (gap closing) continues
as a NEW track whose parent is the old one; a division ends the mother track and
starts two daughter tracks with the mother as parent. The scorer below enforces
this (py-ctcmetrics ``valid()`` marks a result with a label missing inside its
[B, E] range invalid), and Trackastra's CTC writer splits tracks at gaps the
same way.

Ground truth (``NN_GT``): ``TRA/man_trackTTT.tif`` (markers labelled with track
ids, every frame) + ``TRA/man_track.txt``; ``SEG/man_segTTT.tif`` (instance
masks, often only some frames). Scores come from py-ctcmetrics (module
``ctc_metrics``), a re-implementation of the challenge's measures that matches
the official Java evaluator. Its mask matching (``match``) is replaced here by
:func:`match_masks`, for two reasons: it drops the first label of every mask
as the background, so a result frame that is one object covering every pixel
was judged invalid; and it calls ``sklearn.metrics.confusion_matrix`` on every
pair of full frames, which for labels that are not 0..n-1 maps each pixel
through a Python dict (about 2.8 s per 1024 x 1024 frame pair on a loaded
2-core CPU, 100 s for GOWT1 02). :func:`match_masks` counts the pairs with the
instance scores' :func:`~unet_tf.evaluation.matching.overlap_table` and is tested
equal to py-ctcmetrics' ``match`` on masks with background.
"""

from __future__ import annotations

import contextlib
import io as _io
import warnings
from pathlib import Path

import numpy as np

from unet_tf.errors import UserInputError
from unet_tf.evaluation.matching import overlap_table
from unet_tf.io.writers import atomic_path, write_tiff
from unet_tf.objects.labels import check_labels

SCORES = ("DET", "SEG", "TRA")


def mask_name(frame: int, n_frames: int) -> str:
    """File name of one CTC result mask: ``mask007.tif``, or ``mask0007.tif`` for > 999 frames.

    Args:
        frame: int, 0-based frame index.
        n_frames: int, number of frames in the sequence (sets the padding).
    """
    digits = 4 if n_frames > 999 else 3
    return f"mask{frame:0{digits}d}.tif"


def write_ctc_mask(out_dir: str | Path, frame: int, n_frames: int, mask: np.ndarray) -> Path:
    """Write one frame's track-id mask as ``out_dir/maskTTT.tif`` (uint16, zlib), atomically.

    Args:
        out_dir: str or Path, the result folder (created if missing).
        frame: int, 0-based frame index.
        n_frames: int, number of frames in the sequence.
        mask: (H, W) integer array of track ids (0 = background), all <= 65535.
    """
    mask = check_labels(mask, "mask")
    if mask.size and mask.max() > 65535:
        raise ValueError(f"track ids must be in 0..65535 for uint16 CTC masks; received max {mask.max()}")
    return write_tiff(Path(out_dir) / mask_name(frame, n_frames), mask.astype(np.uint16, copy=False))


def write_res_track(path: str | Path, lineage: np.ndarray) -> Path:
    """Write the CTC lineage table ``L B E P`` (one track per line, space-separated), atomically.

    Args:
        path: str or Path, usually ``<result folder>/res_track.txt``.
        lineage: (N, 4) integer array, rows (label, first frame, last frame, parent).
    """
    lineage = np.asarray(lineage, dtype=np.int64).reshape(-1, 4)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="ascii") as f:
            for label, begin, end, parent in lineage:
                f.write(f"{label} {begin} {end} {parent}\n")
    return Path(path)


def read_res_track(path: str | Path) -> np.ndarray:
    """Read a ``res_track.txt`` / ``man_track.txt`` with the scorer's own reader.

    Returns:
        (N, 4) int64 array of (label, first frame, last frame, parent).
    """
    from ctc_metrics.utils.filesystem import read_tracking_file

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file (expected a CTC track table 'L B E P')")
    table = read_tracking_file(str(path))
    return np.asarray(table, dtype=np.int64).reshape(-1, 4)


def _check_folders(result_dir: Path, gt_dir: Path) -> bool:
    """Raise UserInputError for missing inputs; return whether ``gt_dir/SEG`` holds masks."""
    if not (gt_dir / "TRA" / "man_track.txt").is_file():
        raise UserInputError(f"{gt_dir}: not a CTC ground-truth folder (no TRA/man_track.txt)")
    if not (result_dir / "res_track.txt").is_file():
        raise UserInputError(f"{result_dir}: not a CTC result folder (no res_track.txt)")
    n_gt = len(list((gt_dir / "TRA").glob("man_track*.tif")))
    n_res = len(list(result_dir.glob("mask*.tif")))
    if n_res != n_gt:
        raise UserInputError(
            f"{result_dir}: has {n_res} mask*.tif frames but {gt_dir / 'TRA'} has {n_gt} man_track*.tif frames"
        )
    return any((gt_dir / "SEG").glob("man_seg*.tif"))


def match_masks(ref_path: str | None, comp_path: str) -> tuple[list, list, list, list, list]:
    """py-ctcmetrics' ``match`` of one reference and one result mask, without its background assumption.

    py-ctcmetrics drops the first value of each mask's ``np.unique`` as the
    background, so a result frame that is one object covering every pixel (no 0)
    loses that object, and its ``valid()`` then fails ("Label 1 in res_track but
    not in mask"). Here 0 is background only where it occurs. A reference object
    matches the result object covering more than half of it (the AOGM rule).

    Args:
        ref_path: str, reference mask file (None: no reference, as in py-ctcmetrics).
        comp_path: str, result mask file.

    Returns:
        (reference labels, result labels, matched reference labels, their result
        labels, their IoUs), lists as py-ctcmetrics' ``match`` returns them.
    """
    import tifffile
    from ctc_metrics.utils.representations import match

    if ref_path is None or not Path(ref_path).is_file():  # no reference, or 3-D slices: theirs
        return match(ref_path, comp_path)
    table = overlap_table(tifffile.imread(ref_path), tifffile.imread(comp_path))
    keep = table.inter > 0.5 * table.true_area[table.rows]
    return (
        table.true_ids.tolist(),
        table.pred_ids.tolist(),
        table.true_ids[table.rows[keep]].tolist(),
        table.pred_ids[table.cols[keep]].tolist(),
        table.iou[keep].tolist(),
    )


def _match_all(ref_masks: list[str], comp_masks: list[str], threads: int) -> dict[str, list]:
    """py-ctcmetrics' ``match_computed_to_reference_masks`` through :func:`match_masks`."""
    if threads == 1:
        matches = [match_masks(r, c) for r, c in zip(ref_masks, comp_masks)]
    else:
        from multiprocessing import Pool, cpu_count

        with Pool(threads or cpu_count()) as pool:
            matches = pool.starmap(match_masks, zip(ref_masks, comp_masks))
    keys = ("labels_ref", "labels_comp", "mapped_ref", "mapped_comp", "ious")
    return {key: [m[i] for m in matches] for i, key in enumerate(keys)}


def _evaluate(result_dir: Path, gt_dir: Path, metrics: list[str], threads: int) -> dict:
    """py-ctcmetrics' ``evaluate_sequence`` (its ``load_data`` + ``calculate_metrics``) with :func:`match_masks`."""
    from ctc_metrics.metrics import valid
    from ctc_metrics.scripts.evaluate import calculate_metrics
    from ctc_metrics.utils.filesystem import parse_masks, read_tracking_file

    comp_tracks = read_tracking_file(str(result_dir / "res_track.txt"))
    ref_tracks = read_tracking_file(str(gt_dir / "TRA" / "man_track.txt"))
    comp_masks = parse_masks(str(result_dir))
    traj = _match_all(parse_masks(str(gt_dir / "TRA")), comp_masks, threads)
    is_valid = valid(comp_masks, comp_tracks, traj["labels_comp"])
    segm = {}
    if "SEG" in metrics:
        ref_seg = parse_masks(str(gt_dir / "SEG"))
        frames = [int(Path(x).name.replace("man_seg", "").replace(".tif", "").replace("_", "")) for x in ref_seg]
        segm = _match_all(ref_seg, [comp_masks[t] for t in frames], threads)
    return calculate_metrics(comp_tracks, ref_tracks, traj, segm, metrics, is_valid)


def score_sequence(result_dir: str | Path, gt_dir: str | Path, *, threads: int = 1) -> dict[str, float | None]:
    """CTC DET, SEG and TRA of one result folder against one ground-truth folder.

    Computed by py-ctcmetrics (its ``valid`` and ``calculate_metrics``) on the
    mask matches of :func:`match_masks`; its console output is swallowed.

    Args:
        result_dir: str or Path, folder with ``maskTTT.tif`` and ``res_track.txt``.
        gt_dir: str or Path, the ``NN_GT`` folder (``TRA/`` required, ``SEG/`` optional).
        threads: int, worker processes for mask matching (default 1; 0 = all CPUs).

    Returns:
        ``{"DET": float, "SEG": float or None (no SEG ground truth), "TRA": float}``,
        each in [0, 1].

    Raises:
        UserInputError: a folder misses its track table, the frame counts differ,
            or the result breaks the CTC rules (the scorer's first complaint is quoted).
    """
    result_dir, gt_dir = Path(result_dir), Path(gt_dir)
    has_seg = _check_folders(result_dir, gt_dir)
    metrics = ["Valid", "DET", "TRA"] + (["SEG"] if has_seg else [])
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(_io.StringIO()):
        warnings.simplefilter("always")
        results = _evaluate(result_dir, gt_dir, metrics, threads)
    if not results.get("Valid"):
        reason = next((str(w.message) for w in caught), "no reason given")
        raise UserInputError(f"{result_dir}: not a valid CTC result ({reason})")
    return {name: (None if results.get(name) is None else float(results[name])) for name in SCORES}
