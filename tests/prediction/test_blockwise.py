"""Blockwise prediction on a 2-worker Dask cluster equals the whole-image prediction, survives a killed
worker, resumes a stopped run, and refuses bad input."""

import functools

import numpy as np
import pytest

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError
from unet_tf.models.bundled import bundled_models
from unet_tf.prediction.blockwise import predict_blockwise
from unet_tf.prediction.blockwise._merge import final_ids, matches
from unet_tf.prediction.blockwise._plan import plan_blocks
from unet_tf.prediction.blockwise._predict import predict_region
from unet_tf.prediction.blockwise._testing import fail_on, kill_once
from unet_tf.prediction.tiled import predict_tiled

TABLE_TEXT = ("image", "class", "page", "scale_source")  # objects.csv columns compared as text, not numbers

pytestmark = pytest.mark.skipif("nuclei" not in bundled_models(), reason="the nuclei model is not installed")
TILE, OVERLAP = 64, 16
SETTINGS = dict(tile=TILE, overlap=OVERLAP, batch_size=4, precision="float32")  # auto: bfloat16 on some CPUs


def nuclei_on_faces(side: int = 256, seed: int = 0) -> np.ndarray:
    """uint16 fluorescence-like image: discs of ~18 px on a 32 px grid, so many lie across the faces of
    blocks of 64 px and more; pairs on the faces touch each other."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float64)
    image = np.zeros((side, side))
    for cy in range(16, side, 32):
        for cx in range(16, side, 32):
            cy2, cx2 = cy + rng.uniform(-9, 9), cx + rng.uniform(-9, 9)
            r2 = ((yy - cy2) ** 2 + (xx - cx2) ** 2) / rng.uniform(7.5, 9.5) ** 2
            image += rng.uniform(0.6, 1.0) * np.clip(1.2 - r2, 0, 1) ** 0.5
    image = 200 + 3000 * image + rng.normal(0, 60, image.shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def two_sizes(side: int = 256, seed: int = 0) -> np.ndarray:
    """uint16: large touching discs (radius ~12 px) in the left half, small ones (~4 px) in the right: each
    block's own median radius is far from the image's, so only the image's splits every block as the whole."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float64)
    image = np.zeros((side, side))
    for spacing, radius, x0 in ((22, 12.0, 0), (10, 4.0, side // 2)):
        for cy in range(spacing // 2, side, spacing):
            for cx in range(x0 + spacing // 2, x0 + side // 2, spacing):
                r2 = ((yy - cy - rng.uniform(-3, 3)) ** 2 + (xx - cx - rng.uniform(-3, 3)) ** 2) / radius**2
                image = np.maximum(image, np.clip(1.2 - r2, 0, 1) ** 0.5)
    return np.clip(200 + 3000 * image + rng.normal(0, 30, image.shape), 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    from unet_tf.cluster import worker_environment

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=worker_environment(1)
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    """The image as a zarr array, and its whole-image prediction (probabilities, mask, instances)."""
    import zarr

    import unet_tf

    image = nuclei_on_faces()
    path = tmp_path_factory.mktemp("section") / "section.zarr"
    zarr.create_array(str(path), data=image, chunks=(100, 100))
    model = unet_tf.load_model("nuclei")
    info = unet_tf.read_info(model)
    whole = unet_tf.predict_image(model, image, PredictConfig(**SETTINGS), diameter=info.object_diameter)
    assert whole.scale_factor == 1.0 and whole.instances.max() > 30  # not vacuous: many objects
    return path, whole, info, image


def read(out, name):
    """Level 0 of one part of the OME-Zarr output: ``mask``, ``instances`` (labels) or ``probabilities``."""
    import zarr

    where = name if name == "probabilities" else f"labels/{name}"
    return np.asarray(zarr.open_group(str(out), mode="r")[f"{where}/0"][:])


def assert_table_equal(path, expected: list[dict]) -> None:
    """``objects.csv`` at ``path`` holds ``expected`` (rows of ``object_rows`` / ``measure_objects``): same rows in
    the same order, integers exact, floats within 1e-9 (relative), NaN where NaN; the scale columns aside."""
    import pandas as pd

    table = pd.read_csv(path, keep_default_na=False, na_values=["nan"])
    assert len(table) == len(expected) > 0
    for column in table.columns:
        if column.startswith("scale_"):
            continue
        want = [row.get(column) for row in expected]
        if column in TABLE_TEXT:
            assert [str(v) for v in table[column]] == ["" if w is None else str(w) for w in want], column
        else:
            want = np.array([np.nan if w is None else w for w in want], np.float64)
            got = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)


def assert_same_partition(a: np.ndarray, b: np.ndarray) -> None:
    """Same foreground and a one-to-one contingency table between the ids of ``a`` and ``b``."""
    np.testing.assert_array_equal(a > 0, b > 0)
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]], 1), axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1])), "an object is split or merged"


# === Pure parts: plan, region prediction, merge ===


def smooth_fn(batch: np.ndarray) -> np.ndarray:
    """A position-dependent stand-in for a network: a 5x5 box blur per tile, then 3 'probabilities'."""
    from scipy import ndimage

    p = 1 / (1 + np.exp(-ndimage.uniform_filter(batch[..., 0], size=(1, 5, 5))))
    return np.stack([p, 1 - p, p * p], -1).astype(np.float32)


@pytest.mark.parametrize("block_size", [64, 80, 128, 320])
def test_regions_assemble_the_whole_image_bit_for_bit(block_size):
    image = np.random.default_rng(1).normal(size=(300, 270)).astype(np.float32)
    whole = predict_tiled(smooth_fn, image, tile=64, overlap=16, size_divisor=16, batch_size=3)
    plan = plan_blocks(image.shape, tile=64, overlap=16, size_divisor=16, block_size=block_size, halo=20)
    out = np.full_like(whole, np.nan)
    for block in plan.blocks():
        y0, y1, x0, x1 = block.region
        region = predict_region(smooth_fn, lambda r, c: image[r, c], plan, block.region, batch_size=3)
        np.testing.assert_array_equal(region, whole[y0:y1, x0:x1])
        i0, i1, j0, j1 = block.interior
        out[i0:i1, j0:j1] = whole[i0:i1, j0:j1]
    assert not np.isnan(out).any()  # the interiors tile the image


@pytest.mark.parametrize("block_size", [48, 72, 100])
def test_block_size_smaller_than_the_tile_or_off_the_divisor_names_both(block_size):
    with pytest.raises(UserInputError, match=rf"`block_size` {block_size}.*`predict.tile` 64.*divisor 16"):
        plan_blocks((500, 500), tile=64, overlap=16, size_divisor=16, block_size=block_size)


def test_touching_cells_on_a_face_stay_two_and_a_crossing_cell_becomes_one():
    # Two blocks side by side, regions overlapping in columns [8, 12): cells 1 and 2 of the left block touch on
    # the face; the right block labels them apart too (3 and 4). Cell 5 (left) crosses into 6 (right).
    left, right = np.zeros((6, 12), np.int32), np.zeros((6, 8), np.int32)
    left[0:3, 6:10], left[0:3, 10:12] = 1, 2
    right[0:3, 2:6], right[0:3, 6:8] = 3, 4  # in image columns: 8-9 -> 3 (= cell 1), 10-11 -> 2's pixels
    right[0:3, 0:2] = 3
    left[4:6, 9:12], right[4:6, 0:5] = 5, 6
    pairs = matches(left, (0, 6, 0, 12), right, (0, 6, 8, 16), (6, 16), 0)
    assert sorted(map(tuple, pairs.tolist())) == [(1, 3), (2, 3), (5, 6)]  # 2's pixels lie in right's 3
    right[0:3, 2:4] = 4  # now the right block splits the pair where the left one does
    pairs = matches(left, (0, 6, 0, 12), right, (0, 6, 8, 16), (6, 16), 0)
    assert sorted(map(tuple, pairs.tolist())) == [(1, 3), (2, 4), (5, 6)]
    lookups = final_ids([5, 6], [np.array([1, 2, 5]), np.array([3, 4, 6])], {(0, 1): pairs})
    assert lookups[0][[1, 2, 5]].tolist() == [1, 2, 3] and lookups[1][[3, 4, 6]].tolist() == [1, 2, 3]


# === On the cluster ===


def run(cluster, section, out, **options):
    settings = {**SETTINGS, "block_size": 64, **options}
    log = settings.pop("log", lambda s: None)
    return predict_blockwise("nuclei", section[0], out, PredictConfig(scheduler=cluster), log=log, **settings)


@pytest.mark.slow
@pytest.mark.parametrize("block_size", [64, 112, 256])
def test_blockwise_equals_whole_image(cluster, section, tmp_path, block_size):
    whole = section[1]
    result = run(cluster, section, tmp_path / "out", block_size=block_size, save_probabilities=True)
    assert result["blocks"] == (-(-256 // block_size)) ** 2 == result["predicted"]
    prob = read(tmp_path / "out", "probabilities")
    np.testing.assert_allclose(np.moveaxis(prob, 0, -1), whole.probabilities, atol=1e-5)
    np.testing.assert_array_equal(read(tmp_path / "out", "mask"), whole.mask)
    instances = read(tmp_path / "out", "instances")
    assert_same_partition(instances, whole.instances)
    assert result["objects"] == instances.max() == len(np.unique(instances)) - 1  # consecutive 1..N


def test_blockwise_in_bfloat16_equals_the_whole_image_in_bfloat16(cluster, section, tmp_path):
    """The precision reaches the workers: blocks computed in mixed bfloat16 give the whole image's bfloat16
    prediction (tiles are the same computations), which differs from the float32 one."""
    import unet_tf

    model = unet_tf.load_model("nuclei", precision="mixed_bfloat16")
    image, config = section[3], PredictConfig(**{**SETTINGS, "precision": "mixed_bfloat16"})
    whole = unet_tf.predict_image(model, image, config, diameter=section[2].object_diameter)
    lines = []
    run(cluster, section, tmp_path / "out", precision="mixed_bfloat16", save_probabilities=True, log=lines.append)
    prob = np.moveaxis(read(tmp_path / "out", "probabilities"), 0, -1)
    assert np.abs(whole.probabilities - section[1].probabilities).max() > 1e-4  # not vacuous: bf16 differs
    np.testing.assert_allclose(prob, whole.probabilities, atol=1e-5)
    np.testing.assert_array_equal(read(tmp_path / "out", "mask"), whole.mask)
    assert any(line.startswith("prediction in mixed_bfloat16") for line in lines)


def crossing_a_face(rows: list[dict], block: int) -> int:
    """How many rows' boxes span a block face (a multiple of ``block``) in y or x."""
    return sum(any(row[f"bbox_{a}0"] // block != (row[f"bbox_{a}1"] - 1) // block for a in "yx") for row in rows)


def test_the_object_table_equals_the_whole_image_one(cluster, section, tmp_path):
    """Blocks of 64 px: ``objects.csv`` holds the rows ``measure_objects`` gives the merged labels, with ids =
    the label ids, and (the partition being the whole image's) the rows the whole-image path writes."""
    import pandas as pd

    from unet_tf.models.file import min_size_for
    from unet_tf.objects.labels import renumber_by_position
    from unet_tf.objects.morphometry import measure_objects
    from unet_tf.prediction.files import object_rows

    _, whole, info, image = section
    out = tmp_path / "out"
    result = run(cluster, section, out)
    instances = read(out, "instances")
    np.testing.assert_array_equal(renumber_by_position(instances)[0], instances)  # ids in raster order
    size = min_size_for(PredictConfig(**SETTINGS), info)[0]
    ids, names = (instances > 0).astype(np.uint8), ("background", "object")
    expected = measure_objects(ids, names, image_name="section", min_size=size, instances=instances, image=image)
    assert crossing_a_face(expected, 64) >= 5  # not vacuous: objects measured from crops
    assert [row["object_id"] for row in expected] == list(range(1, instances.max() + 1))
    assert result["table_rows"] == len(expected)
    assert not list((out / ".unet_tf" / "results").iterdir())  # every spilled result read back and removed
    assert_table_equal(out / "objects.csv", expected)
    assert_table_equal(out / "objects.csv", object_rows(whole, info, image, "section", None, size))
    summary = pd.read_csv(out / "objects_summary.csv")
    assert summary["class"].tolist() == ["object"] and summary["count"].tolist() == [len(expected)]


def pass_through_model(path, thresholds: tuple[float, ...], names: tuple[str, ...]):
    """A semantic model file whose output the test knows: a 1x1 convolution of the normalized input x. Two
    classes: sigmoid(k (x - t)); three: the softmax of 0, k (x - t1), k (2 x - t1 - t2), i.e. background below
    t1, class 1 up to t2, class 2 above."""
    import keras

    from unet_tf.models.file import ModelInfo, attach_info

    k, t = 40.0, thresholds
    inputs = keras.Input((None, None, 1))
    if len(t) == 1:
        layer = keras.layers.Conv2D(1, 1, activation="sigmoid", name="passthrough")
        weights = [np.full((1, 1, 1, 1), k, np.float32), np.array([-k * t[0]])]
    else:
        layer = keras.layers.Conv2D(3, 1, activation="softmax", name="passthrough")
        weights = [np.array([0.0, k, 2 * k], np.float32).reshape(1, 1, 1, 3), np.array([0, -k * t[0], -k * sum(t)])]
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights(weights)
    attach_info(model, ModelInfo(tuple(range(len(names))), names)).save(path)
    return path


@pytest.fixture(scope="module")
def semantic_models(tmp_path_factory):
    """``rings``: each disc of :func:`nuclei_on_faces` a ``core`` (x > 0.6) in a thin ``ring`` (x > 0.25), so
    every class has objects across faces; ``discs``: ``nucleus`` above x = 0.3, touching discs to split."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "rings": pass_through_model(folder / "rings.keras", (0.25, 0.6), ("background", "ring", "core")),
        "discs": pass_through_model(folder / "discs.keras", (0.3,), ("background", "nucleus")),
    }


@pytest.mark.parametrize("kind, split", [("rings", False), ("discs", False), ("discs", True)])
def test_a_semantic_model_blockwise_equals_whole_image_with_its_table(
    cluster, section, semantic_models, tmp_path, kind, split
):
    """Components of each class cross many faces (the table joins them); with ``split_touching`` every block
    splits with the whole image's median inscribed radius, so the instances and the table are the whole
    image's."""
    import unet_tf
    from unet_tf.models.file import min_size_for
    from unet_tf.prediction.files import object_rows

    model = unet_tf.load_model(str(semantic_models[kind]))
    info, image, out = unet_tf.read_info(model), section[3], tmp_path / "out"
    config = PredictConfig(**SETTINGS, split_touching=split)
    whole = unet_tf.predict_image(model, image, config)
    settings = dict(log=lambda s: None, scheduler=cluster, block_size=64)
    predict_blockwise(str(semantic_models[kind]), section[0], out, config, **settings)
    np.testing.assert_array_equal(read(out, "mask"), whole.mask)
    rows = object_rows(whole, info, image, "section", None, min_size_for(config, info)[0])
    assert crossing_a_face(rows, 64) >= 5 and {row["class"] for row in rows} == set(info.class_names[1:])
    if split:
        from scipy import ndimage

        assert whole.instances.max() > ndimage.label(whole.ids > 0)[1]  # not vacuous: touching objects split
        assert_same_partition(read(out, "instances"), whole.instances)
    assert_table_equal(out / "objects.csv", rows)


def identical_objects(a: np.ndarray, b: np.ndarray) -> float:
    """The share of ``b``'s objects that are an object of ``a``, pixel for pixel."""
    pairs, shared = np.unique(np.stack([a[b > 0], b[b > 0]], 1), axis=0, return_counts=True)
    size_a, size_b = np.bincount(a.ravel()), np.bincount(b.ravel())
    same = (pairs[:, 0] > 0) & (shared == size_a[pairs[:, 0]]) & (shared == size_b[pairs[:, 1]])
    return same.sum() / (len(size_b[1:].nonzero()[0]) or 1)


def test_split_touching_uses_the_whole_images_radius_in_every_block(cluster, semantic_models, tmp_path):
    """Every block splits with the radius of the whole image (exactly), which its own is far from. The split
    itself is the whole image's only up to the watershed's ties (skimage pops the seeds, all of age 0, in an
    order that depends on every seed of the array, so equal distances can go either way; 95 % of the objects
    here are the whole image's pixel for pixel, 94 % with each block's own radius): a sanity bound only."""
    import zarr

    import unet_tf
    from unet_tf.objects.instances import median_inscribed_radius

    image, path = two_sizes(), tmp_path / "sizes.zarr"
    zarr.create_array(str(path), data=image, chunks=(64, 64))
    model = unet_tf.load_model(str(semantic_models["discs"]))
    config = PredictConfig(**SETTINGS, split_touching=True)
    whole = unet_tf.predict_image(model, image, config)
    radius = median_inscribed_radius(*_radii(whole.ids > 0))
    halves = [median_inscribed_radius(*_radii(whole.ids[:, s] > 0)) for s in (slice(0, 128), slice(128, None))]
    assert halves[0] > 2 * halves[1]  # not vacuous: each half's own radius is far from the other's
    settings = dict(log=lambda s: None, scheduler=cluster, block_size=64)
    result = predict_blockwise(str(semantic_models["discs"]), path, tmp_path / "out", config, **settings)
    assert result["radii"] == {"nucleus": radius}
    assert identical_objects(read(tmp_path / "out", "instances"), whole.instances) >= 0.9


def _radii(mask: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy import ndimage

    from unet_tf.objects.instances import inscribed_radii

    dist = ndimage.distance_transform_edt(mask).astype(np.float32)
    return inscribed_radii(dist, ndimage.label(mask, np.ones((3, 3)))[0]), float(dist.max())


def test_a_killed_worker_is_replaced_and_the_result_unchanged(cluster, section, tmp_path):
    flag = tmp_path / "killed"
    task = functools.partial(kill_once, str(flag), (1, 2))
    result = predict_blockwise(
        "nuclei",
        section[0],
        tmp_path / "out",
        PredictConfig(scheduler=cluster, **SETTINGS, block_size=64),
        log=lambda s: None,
        block_task=task,
    )
    assert flag.exists() and result["predicted"] == 16
    np.testing.assert_array_equal(read(tmp_path / "out", "mask"), section[1].mask)
    assert_same_partition(read(tmp_path / "out", "instances"), section[1].instances)


def test_a_stopped_run_resumes_from_its_markers(cluster, section, tmp_path):
    out = tmp_path / "out"
    config = PredictConfig(scheduler=cluster, **SETTINGS, block_size=64)
    with pytest.raises(RuntimeError, match="stopped at block 2_1"):
        predict_blockwise(
            "nuclei", section[0], out, config, log=lambda s: None, block_task=functools.partial(fail_on, (2, 1))
        )
    done = len(list((out / ".unet_tf" / "blocks").glob("*.done")))
    assert done < 16 and not (out / ".unet_tf" / "blocks" / "2_1.done").exists()
    with pytest.raises(
        UserInputError, match="exists with the output of this image and settings; `resume` continues it"
    ):
        predict_blockwise("nuclei", section[0], out, config, log=lambda s: None)
    result = predict_blockwise("nuclei", section[0], out, config, log=lambda s: None, resume=True)
    # tasks of the stopped run still running on the cluster may add markers meanwhile: never fewer skipped
    assert result["skipped"] >= done and result["predicted"] == 16 - result["skipped"] >= 1
    np.testing.assert_array_equal(read(out, "mask"), section[1].mask)
    assert_same_partition(read(out, "instances"), section[1].instances)


def test_resume_refuses_an_output_of_another_image(cluster, section, tmp_path):
    import zarr

    other = tmp_path / "other.zarr"
    zarr.create_array(str(other), data=nuclei_on_faces(seed=1)[:128], chunks=(64, 64))
    run(cluster, (other,), tmp_path / "out")
    with pytest.raises(UserInputError, match="holds the output of another image or settings"):
        run(cluster, section, tmp_path / "out", resume=True)


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(section, tmp_path, monkeypatch):
    import unet_tf.cluster

    monkeypatch.setattr(unet_tf.cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(UserInputError, match=r"`scheduler` tcp://127.0.0.1:9: no Dask scheduler answered"):
        predict_blockwise("nuclei", section[0], tmp_path / "out", PredictConfig(scheduler="tcp://127.0.0.1:9"))
    assert not (tmp_path / "out").exists()


def test_predict_py_runs_blockwise_and_refuses_two_inputs(cluster, section, tmp_path, capsys):
    """``predict.py --scheduler``: the same blockwise path (the mask equals the whole image's), one summary
    line; more than one input is one line and exit 2, nothing written."""
    from unet_tf.cli.predict import main as predict_main

    out = tmp_path / "out.ome.zarr"
    flags = ["--weights", "nuclei", "--tile", str(TILE), "--overlap", str(OVERLAP), "--precision", "float32"]
    flags += ["--scheduler", cluster, "--block-size", "128", "--out", str(out)]
    assert predict_main([*flags, "--input", str(section[0])]) == 0
    np.testing.assert_array_equal(read(out, "mask"), section[1].mask)
    rows = sum(1 for _ in open(out / "objects.csv")) - 1
    assert f"{out}: 4 block(s), 4 predicted now, {rows} row(s) in objects.csv" in capsys.readouterr().out
    other = tmp_path / "other"
    assert predict_main([*flags[:-1], str(other), "--input", str(section[0]), str(section[0])]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--scheduler: give one image with --input and the output folder with --out")
    )
    assert not other.exists()
