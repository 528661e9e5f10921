"""Session fixtures shared by the test files: tiny datasets and models built once per run.

Plain helper functions are in ``_helpers.py``. Fixtures here are session-scoped
when what they return is only read by the tests; a test that changes a file
copies it first.
"""

from __future__ import annotations

import pytest
from _helpers import TEM_NAMES, TEM_VALUES, save_model, tiny_train_config


@pytest.fixture(scope="session")
def tem_dir_factory(tmp_path_factory):
    """``make(n_train)``: a synthetic TEM folder (n_train + 1 test image, 128 px, seed 0), written once per size."""
    from unet_tf.synthetic import write_tem_dataset

    made = {}

    def make(n_train: int):
        if n_train not in made:
            root = tmp_path_factory.mktemp(f"tem{n_train}")
            write_tem_dataset(root, n_train=n_train, n_test=1, size=128, seed=0)
            made[n_train] = root
        return made[n_train]

    return make


@pytest.fixture(scope="session")
def tem_model_file(tmp_path_factory):
    """An untrained 5-class TEM model file (seed 0); for tests that only read it."""
    return save_model(tmp_path_factory.mktemp("tem_model") / "best.keras", TEM_VALUES, TEM_NAMES)


@pytest.fixture(scope="session")
def tiny_trained_run(tem_dir_factory, tmp_path_factory):
    """(run folder, summary) of one tiny TEM training (3 training images, 2 epochs x 2 steps), trained once.

    Tests that only need *a* trained run folder or ``best.keras`` read it;
    none may write into it.
    """
    from unet_tf.training.run import train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    summary = train(tiny_train_config(tem_dir_factory(3), out), verbose=0)
    return out, summary
