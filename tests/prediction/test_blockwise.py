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

pytestmark = pytest.mark.skipif("nuclei" not in bundled_models(), reason="the nuclei model is not installed")
TILE, OVERLAP = 64, 16
SETTINGS = dict(tile=TILE, overlap=OVERLAP, batch_size=4)


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
    return path, whole


def read(out, name):
    """Level 0 of one part of the OME-Zarr output: ``mask``, ``instances`` (labels) or ``probabilities``."""
    import zarr

    where = name if name == "probabilities" else f"labels/{name}"
    return np.asarray(zarr.open_group(str(out), mode="r")[f"{where}/0"][:])


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
    return predict_blockwise(
        "nuclei", section[0], out, PredictConfig(scheduler=cluster), log=lambda s: None, **settings
    )


@pytest.mark.slow
@pytest.mark.parametrize("block_size", [64, 112, 256])
def test_blockwise_equals_whole_image(cluster, section, tmp_path, block_size):
    _, whole = section
    result = run(cluster, section, tmp_path / "out", block_size=block_size, save_probabilities=True)
    assert result["blocks"] == (-(-256 // block_size)) ** 2 == result["predicted"]
    prob = read(tmp_path / "out", "probabilities")
    np.testing.assert_allclose(np.moveaxis(prob, 0, -1), whole.probabilities, atol=1e-5)
    np.testing.assert_array_equal(read(tmp_path / "out", "mask"), whole.mask)
    instances = read(tmp_path / "out", "instances")
    assert_same_partition(instances, whole.instances)
    assert result["objects"] == instances.max() == len(np.unique(instances)) - 1  # consecutive 1..N


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


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(section, tmp_path):
    with pytest.raises(UserInputError, match=r"`scheduler` tcp://127.0.0.1:9: no Dask scheduler answered"):
        predict_blockwise("nuclei", section[0], tmp_path / "out", PredictConfig(scheduler="tcp://127.0.0.1:9"))
    assert not (tmp_path / "out").exists()
