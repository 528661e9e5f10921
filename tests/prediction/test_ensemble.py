"""The ensemble of K models: the mean probability, agreement of the models, a cross-validation folder."""

import shutil

import numpy as np
import pytest

from unet_tf.config import NormalizeConfig
from unet_tf.errors import UserInputError
from unet_tf.models.file import ModelInfo, load_model, read_info
from unet_tf.prediction.ensemble import Ensemble, ensemble_predict_fn, fold_model_paths, is_folds_folder, load_ensemble
from unet_tf.prediction.image import predict_image
from unet_tf.prediction.tiled import make_predict_fn


class Constant:
    """A stand-in model: an ``info`` and a batch function returning ``value`` everywhere (K = 1 channel)."""

    def __init__(self, value, **info):
        self.value = value
        self.info = ModelInfo((0, 255), ("background", "cell"), size_divisor=4, **info)

    def __call__(self, batch):
        return np.full(batch.shape[:3] + (1,), self.value, np.float32)


def test_two_copies_of_one_model_predict_exactly_as_that_model(tem_model_file):
    first, second = load_model(tem_model_file), load_model(tem_model_file)
    batch = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    single = make_predict_fn(first)(batch)
    assert single.std() > 0  # not vacuous: the model's output varies
    np.testing.assert_array_equal(ensemble_predict_fn([first, second])(batch), single)
    image = np.random.default_rng(1).integers(0, 4000, (96, 80)).astype(np.uint16)
    alone = predict_image(first, image, tile=64, overlap=16)
    together = predict_image(Ensemble([first, second]), image, tile=64, overlap=16)
    np.testing.assert_array_equal(together.probabilities, alone.probabilities)
    np.testing.assert_array_equal(together.mask, alone.mask)


def test_the_ensemble_is_the_mean_of_its_models():
    batch = np.zeros((3, 8, 8, 1), np.float32)
    out = Ensemble([Constant(0.2), Constant(0.6), Constant(0.7)])(batch)
    assert out.shape == (3, 8, 8, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.5, rtol=1e-6)


@pytest.mark.parametrize(
    "other, field",
    [
        (Constant(0.5, normalize=NormalizeConfig(pmin=1.0)), "normalize"),
        (Constant(0.5, object_diameter=30.0), "object_diameter"),
    ],
)
def test_models_that_disagree_are_refused_naming_the_model_and_the_field(other, field):
    with pytest.raises(UserInputError, match=rf"fold-2/best.keras: {field} .* differs from .* of fold-1/best.keras"):
        Ensemble([Constant(0.5), other], ["fold-1/best.keras", "fold-2/best.keras"])
    divisor = Constant(0.5)
    divisor.info = ModelInfo((0, 255), ("background", "cell"), size_divisor=8)
    with pytest.raises(UserInputError, match=r"model 2: size_divisor 8 differs from 4 of model 1"):
        Ensemble([Constant(0.5), divisor])


def test_a_folds_folder_loads_its_fold_models_in_fold_order(tem_model_file, tmp_path):
    for fold in (10, 2, 1):
        (tmp_path / f"fold-{fold}").mkdir()
        shutil.copy(tem_model_file, tmp_path / f"fold-{fold}" / "best.keras")
    (tmp_path / "ensemble").mkdir()  # other folders are not folds
    assert is_folds_folder(tmp_path) and not is_folds_folder(tmp_path / "fold-1")
    assert [p.parent.name for p in fold_model_paths(tmp_path)] == ["fold-1", "fold-2", "fold-10"]
    ensemble = load_ensemble(tmp_path)
    assert len(ensemble.models) == 3 and ensemble.info == read_info(load_model(tem_model_file))
    (tmp_path / "fold-3").mkdir()  # a fold still training
    with pytest.raises(UserInputError, match=r"fold-3 has no best.keras \(unfinished"):
        load_ensemble(tmp_path)
    with pytest.raises(UserInputError, match=r"no fold-<k> folders"):
        fold_model_paths(tmp_path / "ensemble")
