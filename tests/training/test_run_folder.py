"""RunSummary is summary.json, typed; the phases of a run speak library words in their errors."""

import json
import math
from pathlib import Path

import pytest

from unet_tf.errors import UserInputError
from unet_tf.training.run_folder import RunSummary, prepare_run_dir, write_json


def _summary(**changes) -> RunSummary:
    fields = dict(
        run_dir=Path("runs/a"),
        best_epoch=2,
        epochs_run=3,
        best={"loss": 0.4, "dice": 0.7, "dice_axon": 0.8, "dice_schwann_cell": 0.6, "iou": 0.5},
        wall_seconds=12.3,
        train_patches_per_second=4.5,
        n_train_images=3,
        n_val_images=1,
        parameters=1234,
        precision="float32",
        onednn=True,
        tensorflow="2.21.0",
        keras="3.15.1",
    )
    return RunSummary(**{**fields, **changes})


def test_to_dict_is_the_summary_json_of_before(tmp_path):
    summary = _summary(stopped="epochs")
    keys = ["run_dir", "best_epoch", "epochs_run", "best", "wall_seconds", "train_patches_per_second"]
    keys += ["n_train_images", "n_val_images", "parameters", "precision", "onednn", "tensorflow", "keras"]
    assert list(summary.to_dict()) == keys  # no distribute key on one device, no stop reason
    assert summary.to_dict()["run_dir"] == "runs/a"
    layout = {"strategy": "mirrored", "replicas": 2, "global_batch_size": 4, "workers": 1}
    spread = _summary(distribute=layout)
    assert list(spread.to_dict()) == [*keys, "distribute"] and spread.to_dict()["distribute"] == layout
    write_json(tmp_path / "summary.json", spread.to_dict())
    assert json.loads((tmp_path / "summary.json").read_text()) == spread.to_dict()


def test_derived_facts():
    summary = _summary()
    assert summary.best_path == Path("runs/a/best.keras") and summary.last_path == Path("runs/a/last.keras")
    assert (summary.best_metric, summary.best_value) == ("dice", 0.7)
    assert summary.class_dice == {"axon": 0.8, "schwann_cell": 0.6}
    undefined = _summary(best={"loss": 0.4, "dice": math.nan})  # no foreground in validation: the loss decided
    assert (undefined.best_metric, undefined.best_value) == ("loss", 0.4)
    assert _summary(stopped="epochs") == _summary(stopped="time_limit")  # the stop reason is not summary.json


def test_library_errors_name_parameters_not_flags(tmp_path):
    from unet_tf.training.distribute import WorkerInfo, check_workers, make_strategy
    from unet_tf.training.losses import make_loss
    from unet_tf.training.run import check_divergence

    (tmp_path / "best.keras").write_text("")
    with pytest.raises(UserInputError, match="use `train.resume` or another `train.out`"):
        prepare_run_dir(tmp_path, resume=False)
    with pytest.raises(UserInputError, match="try a smaller `train.lr`"):
        check_divergence({"loss": [0.5, math.nan]})
    check_divergence({"loss": [0.5, 0.4]})
    with pytest.raises(UserInputError, match="fewer than the 4 workers: raise `data.patches_per_image`"):
        check_workers(3, WorkerInfo(0, 4, True))
    check_workers(3, None)
    with pytest.raises(UserInputError, match="`train.loss`: unknown loss 'bogus'"):
        make_loss("bogus", 2)
    with pytest.raises(UserInputError, match="`train.strategy` bogus: choose one of"):
        make_strategy("bogus")
