"""finetune_on_corrections: the segment-correct-retrain step from Python, on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import tem_pairs, tiny_model

from unet_tf.config import PredictConfig
from unet_tf.errors import UserInputError

FAST = PredictConfig(tile=96, overlap=16)


@pytest.fixture(scope="module")
def instance_model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("corr") / "parent.keras")


def test_finetune_writes_a_run_scores_the_held_pair_and_stops_on_cancel(instance_model, tmp_path):
    from unet_tf.models.file import read_info
    from unet_tf.training.corrections import finetune_on_corrections

    images, labels = tem_pairs(3)
    seen = []
    run = finetune_on_corrections(
        str(instance_model), images, labels, out=tmp_path / "run", steps=50, batch_size=2, predict=FAST,
        log=lambda line: None, progress=lambda done, total: seen.append((done, total)), stop=lambda: len(seen) >= 2,
    )  # fmt: skip
    assert run.run_dir == tmp_path / "run" and (run.run_dir / "best.keras").is_file()
    assert (run.n_train, run.n_held) == (2, 1)
    assert set(run.before) == set(run.after) == {"ap50", "seg"}
    assert seen == [(1, 50), (2, 50)]  # cancelled at the step after stop() turned true
    assert run.summary.stopped == "callback" and run.summary.epochs_run == 1
    assert read_info(run.model).target == "instances"


@pytest.mark.parametrize(
    "images, labels, options, words",
    [
        ([], [], {}, "no corrected pairs"),
        ([np.zeros((32, 32))], [np.zeros((32, 30), np.uint16)], {}, "differs from its image"),
        ([np.zeros((3, 32, 32))], [np.zeros((3, 32, 32), np.uint16)], {}, "one gray plane"),
        ([np.zeros((32, 32))], [np.zeros((32, 32), np.float32)], {}, "integer labels"),
        ([np.zeros((32, 32))], [np.zeros((32, 32), np.uint16)], {"hold_out": 1}, "`hold_out` 1"),
        ([np.zeros((32, 32))], [np.zeros((32, 32), np.uint16)], {"steps": 0}, "`steps` 0"),
    ],
)
def test_bad_input_is_one_line_naming_the_parameter(instance_model, images, labels, options, words):
    from unet_tf.training.corrections import finetune_on_corrections

    with pytest.raises(UserInputError, match=words):
        finetune_on_corrections(instance_model, images, labels, log=lambda line: None, **options)


def test_an_onnx_export_or_a_foreign_file_is_refused(tmp_path):
    from unet_tf.training.corrections import finetune_on_corrections

    pair = ([np.zeros((32, 32))], [np.zeros((32, 32), np.uint16)])
    with pytest.raises(UserInputError, match="ONNX export cannot be fine-tuned"):
        finetune_on_corrections(tmp_path / "model.onnx", *pair)
    foreign = tmp_path / "foreign.keras"
    foreign.write_bytes(b"not a zip")
    with pytest.raises(UserInputError, match="foreign.keras"):
        finetune_on_corrections(foreign, *pair)


def test_semantic_labels_must_hold_the_model_class_values(tmp_path):
    from unet_tf.models.file import ModelInfo
    from unet_tf.training.corrections import corrections_spec

    info = ModelInfo((0, 255), ("background", "object"))
    assert corrections_spec(info, [np.array([[0, 255]])]).class_values == (0, 255)
    with pytest.raises(UserInputError, match=r"values \[7\] are no class"):
        corrections_spec(info, [np.array([[0, 7]])])
