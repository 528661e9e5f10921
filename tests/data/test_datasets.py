"""Layouts give the right pairs; mistakes in folders are named."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from unet_tf.data.labels import load_pairs, read_class_ids
from unet_tf.data.layouts import Sample, dataset_spec, list_samples
from unet_tf.data.splits import choose_subset, split_train_val
from unet_tf.errors import UserInputError


def _png(path: Path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.asarray(array))


def _tif(path: Path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(array))


def make_tem(root: Path, n=3, size=16):
    rng = np.random.default_rng(0)
    for i in range(n):
        _tif(root / "train" / f"raw_{i:02d}.tif", rng.integers(0, 60000, (size, size)).astype(np.uint16))
        _tif(root / "train" / f"label_{i:02d}.tif", rng.choice([0, 50, 100, 150, 200], (size, size)).astype(np.uint8))
    _tif(root / "test" / "raw_00.tif", np.zeros((size, size), np.uint16))
    _tif(root / "test" / "label_00.tif", np.zeros((size, size), np.uint8))
    _tif(root / "test" / "extra.tif", np.zeros((size, size), np.uint16))


def test_tem_layout(tmp_path):
    make_tem(tmp_path)
    train = list_samples("tem", tmp_path, "train")
    assert [(s.image.name, s.labels[0].name) for s in train] == [
        (f"raw_{i:02d}.tif", f"label_{i:02d}.tif") for i in range(3)
    ]
    test = list_samples("tem", tmp_path, "test")
    assert [(s.image.name, [p.name for p in s.labels]) for s in test] == [
        ("raw_00.tif", ["label_00.tif"]),
        ("extra.tif", []),
    ]
    spec = dataset_spec("tem")
    images, masks = load_pairs(train, spec)
    assert images[0].dtype == np.float32 and masks[0].dtype == np.uint8
    assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) <= {0, 1, 2, 3, 4}


def test_tem_unpaired_file_is_named(tmp_path):
    make_tem(tmp_path)
    os.remove(tmp_path / "train" / "label_01.tif")
    with pytest.raises(UserInputError, match=r"raw_01\.tif: has no matching label_01"):
        list_samples("tem", tmp_path, "train")


def test_empty_folder_and_unknown_dataset(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserInputError, match="no raw_XX/label_XX pairs"):
        list_samples("tem", tmp_path)
    with pytest.raises(UserInputError, match="unknown dataset 'nope'"):
        list_samples("nope", tmp_path)
    with pytest.raises(UserInputError, match="no such folder"):
        list_samples("isbi2012", tmp_path / "missing")


def test_isbi2012_membrane_is_class_one(tmp_path):
    label = np.full((8, 8), 255, np.uint8)
    label[3, :] = 0
    _png(tmp_path / "train/image/00.png", np.full((8, 8), 9, np.uint8))
    _png(tmp_path / "train/label/00.png", label)
    samples = list_samples("isbi2012", tmp_path)
    spec = dataset_spec("isbi2012")
    assert spec.class_names[1] == "membrane"
    ids = read_class_ids(samples[0], spec)
    assert ids.sum() == 8 and np.all(ids[3] == 1)


def test_size_mismatch_is_named(tmp_path):
    _png(tmp_path / "train/image/00.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "train/label/00.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(UserInputError, match=r"00\.png: label size 9x8 differs from image 00\.png 8x8"):
        load_pairs(list_samples("isbi2012", tmp_path), dataset_spec("isbi2012"))


def test_unknown_label_value_is_named(tmp_path):
    _png(tmp_path / "train/image/00.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "train/label/00.png", np.array([[0, 255, 128, 0]] * 4, np.uint8))
    with pytest.raises(UserInputError, match=r"label/00\.png: label values 128 are not among"):
        load_pairs(list_samples("isbi2012", tmp_path), dataset_spec("isbi2012"))


def test_folder_layout_suffixes_and_values_from_masks(tmp_path):
    _png(tmp_path / "images/a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "images/b.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "masks/a_mask.png", np.array([[0, 3]] * 2, np.uint8))
    _png(tmp_path / "masks/b.png", np.array([[0, 7]] * 2, np.uint8))
    samples = list_samples("folder", tmp_path)
    assert [s.labels[0].name for s in samples] == ["a_mask.png", "b.png"]
    assert dataset_spec("folder", samples=samples).class_values == (0, 3, 7)
    spec = dataset_spec("folder", class_values=[0, 3, 7], class_names=["bg", "x", "y"])
    assert spec.class_names == ("bg", "x", "y")
    with pytest.raises(UserInputError, match="2 names for 3 class values"):
        dataset_spec("folder", class_values=[0, 3, 7], class_names=["bg", "x"])


def test_ctc_instances_merge_to_foreground(tmp_path):
    inst = np.zeros((6, 6), np.uint16)
    inst[1:3, 1:3] = 1
    inst[4:6, 4:6] = 300
    _tif(tmp_path / "01/t000.tif", np.zeros((6, 6), np.uint16))
    _tif(tmp_path / "01/t001.tif", np.zeros((6, 6), np.uint16))
    _tif(tmp_path / "01_GT/SEG/man_seg001.tif", inst)
    with pytest.raises(UserInputError, match="man_seg001.tif: no TRA marker file"):
        list_samples("ctc", tmp_path)
    _tif(tmp_path / "01_GT/TRA/man_track001.tif", (inst > 0).astype(np.uint16))
    samples = list_samples("ctc", tmp_path)
    assert [s.image.name for s in samples] == ["t001.tif"]
    ids = read_class_ids(samples[0], dataset_spec("ctc"))
    assert ids.sum() == 8 and ids.dtype == np.uint8


def _ctc_partial(tmp_path):
    """A frame with three nuclei (TRA markers) of which SEG annotates one."""
    seg = np.zeros((40, 40), np.uint16)
    seg[5:15, 5:15] = 7
    tra = np.zeros((40, 40), np.uint16)
    tra[8:12, 8:12] = 1
    tra[24:28, 24:28] = 2  # unannotated, away from the others
    tra[8:12, 28:32] = 3  # unannotated
    _tif(tmp_path / "01/t000.tif", np.zeros((40, 40), np.uint16))
    _tif(tmp_path / "01_GT/SEG/man_seg000.tif", seg)
    _tif(tmp_path / "01_GT/TRA/man_track000.tif", tra)
    return list_samples("ctc", tmp_path)[0], tra


def test_ctc_never_labels_a_marked_nucleus_background(tmp_path):
    from unet_tf.data.layouts import instance_spec
    from unet_tf.data.targets import IGNORE_ID

    sample, tra = _ctc_partial(tmp_path)
    for spec in (dataset_spec("ctc"), instance_spec(dataset_spec("ctc"))):
        ids = read_class_ids(sample, spec)
        assert np.all(ids[tra > 0] != 0)  # every marker pixel: an annotated class or ignored, never background
        assert np.all(ids[(tra == 2) | (tra == 3)] == IGNORE_ID)
        assert not np.any(ids[5:15, 5:15] == IGNORE_ID)  # the annotated nucleus is trained on
    target = read_class_ids(sample, instance_spec(dataset_spec("ctc")))
    assert set(np.unique(target[5:15, 5:15])) == {1, 2}  # interior and a boundary ring


def test_instance_target_refuses_class_value_masks(tmp_path):
    from unet_tf.data.labels import read_instances
    from unet_tf.data.layouts import instance_spec

    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 255
    mask[10:15, 10:15] = 255
    _png(tmp_path / "images/a.png", np.zeros((20, 20), np.uint8))
    _png(tmp_path / "masks/a.png", mask)
    sample = list_samples("folder", tmp_path)[0]
    spec = instance_spec(dataset_spec("folder", (0, 255)))
    with pytest.raises(UserInputError, match="a.png: every object has the same value 255"):
        read_instances(sample, spec)


def test_ignore_value_that_is_a_class_value_is_an_error():
    from unet_tf.config import RunConfig, replace_config
    from unet_tf.data.splits import run_spec

    cfg = replace_config(RunConfig(), data={"dataset": "folder", "class_values": (0, 255), "ignore_value": 255})
    with pytest.raises(UserInputError, match="`data.ignore_value` 255: is also the value of class"):
        run_spec(cfg, [])
    cfg = replace_config(cfg, data={"ignore_value": 128})
    assert run_spec(cfg, []).ignore_value == 128


def test_dsb2018_masks_merge(tmp_path):
    case = tmp_path / "abc"
    _png(case / "images/abc.png", np.zeros((5, 5, 3), np.uint8))
    m1 = np.zeros((5, 5), np.uint8)
    m1[0, :2] = 255
    m2 = np.zeros((5, 5), np.uint8)
    m2[4, 4] = 255
    _png(case / "masks/1.png", m1)
    _png(case / "masks/2.png", m2)
    samples = list_samples("dsb2018", tmp_path)
    ids = read_class_ids(samples[0], dataset_spec("dsb2018"))
    assert ids.sum() == 3
    from unet_tf.data.labels import read_instances

    inst = read_instances(samples[0], dataset_spec("dsb2018"))
    assert inst[0, 0] == 1 and inst[4, 4] == 2 and inst.sum() == 1 + 1 + 2  # one id per nucleus file


def test_split_by_image_and_subset_are_deterministic():
    samples = [Sample(Path(f"{i:02d}.png"), (Path(f"l{i:02d}.png"),)) for i in range(10)]
    train, val = split_train_val(samples, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert not {s.image for s in train} & {s.image for s in val}
    assert split_train_val(samples, 0.2, seed=3) == (train, val)
    assert split_train_val(samples, 0.2, seed=4) != (train, val)
    sub = choose_subset(samples, 4, seed=1)
    assert len(sub) == 4 and sub == choose_subset(samples, 4, seed=1)
    assert sub != choose_subset(samples, 4, seed=2)
    with pytest.raises(UserInputError, match="`data.train_size` 11: the dataset has 10"):
        choose_subset(samples, 11)


def test_holdout_takes_the_last_images_by_name():
    from unet_tf.data.splits import split_holdout

    samples = [Sample(Path(f"{i:02d}.png"), (Path(f"l{i:02d}.png"),)) for i in range(30)]
    rest, test = split_holdout(samples, 5)
    assert [s.image.name for s in test] == ["25.png", "26.png", "27.png", "28.png", "29.png"]
    assert len(rest) == 25 and rest[-1].image.name == "24.png"
    assert split_holdout(samples, 0) == (samples, [])
    with pytest.raises(UserInputError, match="`data.holdout` 30"):
        split_holdout(samples, 30)


def test_one_diagonal_object_is_an_instance_not_class_values(tmp_path):
    """An object whose pixels touch only at corners is one object (8-connected), not two of one class."""
    from unet_tf.data.labels import read_instances
    from unet_tf.data.layouts import instance_spec

    mask = np.zeros((12, 12), np.uint8)
    for i in range(2, 9):
        mask[i, i] = 5  # a thin diagonal object: 7 pieces under 4-connectivity
    _png(tmp_path / "images/a.png", np.zeros((12, 12), np.uint8))
    _png(tmp_path / "masks/a.png", mask)
    sample = list_samples("folder", tmp_path)[0]
    spec = instance_spec(dataset_spec("folder", (0, 255)))
    np.testing.assert_array_equal(read_instances(sample, spec), mask.astype(np.int32))
    ids = read_class_ids(sample, spec)
    assert np.all(ids[mask > 0] > 0) and np.all(ids[mask == 0] == 0)


def test_in_memory_class_value_mask_is_a_user_error():
    from unet_tf.data.labels import read_instances
    from unet_tf.data.layouts import ArraySample, instance_spec

    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 255
    mask[10:15, 10:15] = 255
    sample = ArraySample("array_000", np.zeros((20, 20), np.float32), mask)
    spec = instance_spec(dataset_spec("folder", (0, 255)))
    with pytest.raises(UserInputError, match=r"array_000 \(label array\): every object has the same value 255"):
        read_instances(sample, spec)


def _square(shape, top, left, side):
    out = np.zeros(shape, bool)
    out[top : top + side, left : left + side] = True
    return out


def _brute_force_ignore(seg, tra, unannotated, margin):
    """Pixels within ``margin`` (Euclidean, by brute force) of an unannotated marker, minus annotated pixels."""
    ys, xs = np.nonzero(np.isin(tra, unannotated))
    yy, xx = np.mgrid[: seg.shape[0], : seg.shape[1]]
    d2 = np.min((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2, axis=-1)
    return (d2 <= margin * margin) & (seg == 0)


def _write_two_frame_ctc(root: Path):
    """Frame 0: annotated squares of side 6 and 8; frame 1: of side 14 and 16; each frame one unannotated marker.

    Equivalent radii side / sqrt(pi): 3.39, 4.51 | 7.90, 9.03. Per-frame margins 0.8 x the
    frame's median: 3.16 and 6.77; over the set: 0.8 x median(all four) = 0.8 x 6.21 = 4.96 px.
    """
    shape = (48, 48)
    frames = []
    for t, sides in enumerate(((6, 8), (14, 16))):
        seg = np.zeros(shape, np.uint16)
        tra = np.zeros(shape, np.uint16)
        for k, (side, left) in enumerate(zip(sides, (2, 22)), 1):
            seg[_square(shape, 2, left, side)] = 10 + k
            tra[_square(shape, 3, left + 1, 3)] = k
        tra[_square(shape, 36, 20, 3)] = 9  # a nucleus SEG leaves out
        _tif(root / f"01/t{t:03d}.tif", np.full(shape, 100 + t, np.uint16))
        _tif(root / f"01_GT/SEG/man_seg{t:03d}.tif", seg)
        _tif(root / f"01_GT/TRA/man_track{t:03d}.tif", tra)
        frames.append((seg, tra))
    return frames


def test_ctc_ignore_margin_is_set_wide_not_per_frame(tmp_path):
    """The ignore region of every frame is grown by one margin from all annotated objects of train + val."""
    from unet_tf.config import RunConfig
    from unet_tf.data.splits import TrainingData
    from unet_tf.data.targets import IGNORE_ID
    from unet_tf.training.run import load_arrays

    frames = _write_two_frame_ctc(tmp_path)
    samples = list_samples("ctc", tmp_path)
    radii = np.array([6, 8, 14, 16]) / np.sqrt(np.pi)
    margin = 0.8 * np.median(radii)
    assert margin == pytest.approx(4.965, abs=1e-3)
    lines = []
    data = TrainingData(dataset_spec("ctc"), (samples[0],), (samples[1],), data_dir=tmp_path)
    arrays = load_arrays(data, RunConfig(), lines.append)
    for (seg, tra), mask in zip(frames, arrays.train_masks + arrays.val_masks):
        expected = _brute_force_ignore(seg, tra, [9], margin)
        per_frame = _brute_force_ignore(
            seg, tra, [9], 0.8 * np.median(np.sqrt(np.unique(seg[seg > 0], return_counts=True)[1] / np.pi))
        )
        assert expected.sum() != per_frame.sum()  # not vacuous: the two margins ignore different pixels
        np.testing.assert_array_equal(mask == IGNORE_ID, expected)
    assert any("4.96 px" in line for line in lines), lines
    from dataclasses import replace

    from unet_tf.data.labels import with_marker_margin
    from unet_tf.data.layouts import instance_spec

    fixed = replace(dataset_spec("ctc"), ignore_margin=3.0)
    assert instance_spec(fixed).ignore_margin == 3.0  # the instance target keeps the set's margin
    assert with_marker_margin(fixed, samples).ignore_margin == 3.0  # a margin already chosen is kept


GOWT1 = Path(os.environ.get("UNET_TF_DATA", "data")) / "Fluo-N2DH-GOWT1"


@pytest.mark.skipif(not (GOWT1 / "01_GT" / "SEG" / "man_seg018.tif").exists(), reason="GOWT1 data absent")
def test_gowt1_sparse_frames_use_the_set_wide_margin():
    """01/008 and 01/018 annotate one nucleus each (per-frame margins 14.1 and 10.9 px); the set gives 24.4 px."""
    from scipy import ndimage

    from unet_tf.data.labels import read_class_ids, with_marker_margin
    from unet_tf.data.targets import IGNORE_ID, unannotated_markers

    samples = list_samples("ctc", GOWT1)
    segs = [tifffile.imread(s.labels[0]) for s in samples]
    areas = np.concatenate([np.unique(s[s > 0], return_counts=True)[1] for s in segs])
    margin = 0.8 * float(np.median(np.sqrt(areas / np.pi)))
    spec = with_marker_margin(dataset_spec("ctc"), samples)
    assert spec.ignore_margin == pytest.approx(margin) and 24 < margin < 25
    for name in ("man_seg008", "man_seg018"):
        sample = next(s for s in samples if s.labels[0].stem == name and s.image.parent.name == "01")
        seg, tra = tifffile.imread(sample.labels[0]), tifffile.imread(sample.markers)
        grown = ndimage.distance_transform_edt(~np.isin(tra, unannotated_markers(seg, tra))) <= margin
        np.testing.assert_array_equal(read_class_ids(sample, spec) == IGNORE_ID, grown & (seg == 0))


def _isbi_sections(root: Path, n: int):
    for i in range(n):
        _png(root / f"train/image/{i:02d}.png", np.full((4, 4), i, np.uint8))
        _png(root / f"train/label/{i:02d}.png", np.full((4, 4), 255, np.uint8))


def _ctc_sequences(root: Path, frames: dict):
    """``frames``: sequence name -> frame numbers with a SEG annotation."""
    for seq, numbers in frames.items():
        for t in numbers:
            seg = np.zeros((6, 6), np.uint16)
            seg[1:3, 1:3] = 1
            _tif(root / f"{seq}/t{t:03d}.tif", np.zeros((6, 6), np.uint16))
            _tif(root / f"{seq}_GT/SEG/man_seg{t:03d}.tif", seg)
            _tif(root / f"{seq}_GT/TRA/man_track{t:03d}.tif", seg)


def _resolve(dataset, root, **data):
    from unet_tf.config import RunConfig, replace_config
    from unet_tf.data.splits import resolve_data

    seed = data.pop("seed", 0)
    cfg = replace_config(RunConfig(), data={"dataset": dataset, "data_dir": str(root), **data}, train={"seed": seed})
    lines = []
    return resolve_data(cfg, lines.append), lines


def _positions(data):
    """Indices of the validation samples among all of the run's (train + val) samples in name order."""
    everything = sorted((*data.train, *data.val), key=lambda s: (str(s.image.parent), s.image.name))
    return [everything.index(s) for s in data.val]


def test_serial_sections_validate_on_a_contiguous_block(tmp_path):
    """isbi2012 sections are ordered: validation is a run of neighbouring sections, never scattered."""
    _isbi_sections(tmp_path, 30)
    starts = set()
    for seed in range(6):
        data, lines = _resolve("isbi2012", tmp_path, seed=seed)
        pos = _positions(data)
        assert len(data.val) == 6 and len(data.train) == 24  # data.val_fraction 0.2 of 30 images
        assert pos == list(range(pos[0], pos[0] + 6)), (seed, pos)
        first, last = data.val[0].image.stem, data.val[-1].image.stem
        assert any(f"image/{first}..image/{last}" in line for line in lines), lines
        assert _resolve("isbi2012", tmp_path, seed=seed)[0] == data  # deterministic
        starts.add(pos[0])
    assert len(starts) > 1  # the seed still moves the block


def test_time_lapse_sequences_validate_on_whole_sequences(tmp_path):
    """CTC 01 and 02 both present: one whole sequence validates, no frame has a training neighbour."""
    _ctc_sequences(tmp_path, {"01": [2, 5, 6, 7, 8, 10, 12, 13], "02": [1, 22, 25]})
    for seed in range(4):
        data, lines = _resolve("ctc", tmp_path, seed=seed)
        assert {s.image.parent.name for s in data.val} == {"02"} and len(data.val) == 3
        assert {s.image.parent.name for s in data.train} == {"01"} and len(data.train) == 8
        assert any("02/t001..02/t025" in line for line in lines), lines


def test_one_time_lapse_sequence_validates_on_a_contiguous_block_of_the_train_size_subset(tmp_path):
    _ctc_sequences(tmp_path, {"01": list(range(20))})
    for seed in range(4):
        data, _ = _resolve("ctc", tmp_path, seed=seed, train_size=10, holdout=5)
        assert len(data.train) == 8 and len(data.val) == 2 and len(data.test) == 5
        assert [s.image.stem for s in data.test] == [f"t{t:03d}" for t in range(15, 20)]
        pos = _positions(data)
        assert pos[1] == pos[0] + 1, (seed, pos)  # neighbours within the chosen subset
        assert _resolve("ctc", tmp_path, seed=seed, train_size=10, holdout=5)[0] == data


def _frames(seq: str, n: int) -> list:
    return [Sample(Path(f"{seq}/t{t:03d}.tif"), (Path(f"{seq}_GT/SEG/man_seg{t:03d}.tif"),)) for t in range(n)]


def test_ordered_split_takes_the_whole_sequences_closest_to_the_fraction():
    for seed in range(3):
        # 12 frames, n_val = 9: sequence 02 (10 frames, 1 off) beats 01 (2 frames, 7 off)
        train, val = split_train_val(_frames("01", 2) + _frames("02", 10), 0.75, seed, ordered=True)
        assert val == _frames("02", 10) and train == _frames("01", 2)
        # 50 frames, n_val = 25: 20 and 30 are both 5 off; the smaller validation wins
        train, val = split_train_val(_frames("01", 20) + _frames("02", 30), 0.5, seed, ordered=True)
        assert val == _frames("01", 20)
        # 14 sequences (beyond exhaustive search): whole sequences, never all, about n_val = 6 of 28
        samples = [f for k in range(14) for f in _frames(f"{k:02d}", 2)]
        train, val = split_train_val(samples, 0.2, seed, ordered=True)
        seqs = {s.image.parent for s in val}
        assert all(s.image.parent not in seqs for s in train) and len(val) == 6
    # unordered, the same frames are split at random: not whole sequences for every seed
    splits = [split_train_val(_frames("01", 20) + _frames("02", 30), 0.5, seed)[1] for seed in range(3)]
    assert any({s.image.parent for s in val} == {Path("01"), Path("02")} for val in splits)
