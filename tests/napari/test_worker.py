"""The model process of the napari plugin: napari's process never imports TensorFlow; jobs, errors, crashes."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from unet_tf.napari import logic
from unet_tf.napari.worker import ModelWorker

NAPARI_SIDE = (
    "unet_tf.napari",
    "unet_tf.napari.logic",
    "unet_tf.napari.worker",
    "unet_tf.napari.jobs",
    "unet_tf.napari.sample",
    "unet_tf.napari.writer",
)


def test_napari_side_imports_neither_tensorflow_nor_keras():
    pytest.importorskip("magicgui")
    pytest.importorskip("qtpy")
    modules = ", ".join(("unet_tf.napari.widgets", *NAPARI_SIDE))
    code = f"import sys, {modules}; assert not {{'tensorflow', 'keras'}} & set(sys.modules), 'loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def model_worker():
    worker = ModelWorker()
    yield worker
    worker.close()


def test_a_crashed_child_is_one_line_and_the_next_job_starts_another(model_worker):
    first = model_worker.run("os:getpid")
    with pytest.raises(logic.JobError, match=r"^error: the model process stopped \(exit code 3\); it starts again"):
        model_worker.run("os:_exit", 3)
    assert not model_worker.alive
    second = model_worker.run("os:getpid")
    assert second != first and model_worker.pid == second


def test_a_failing_job_is_one_line_without_a_traceback(model_worker, tmp_path):
    foreign = tmp_path / "weights.h5"
    foreign.write_bytes(b"x")
    with pytest.raises(logic.JobError) as caught:
        model_worker.segment(foreign, np.zeros((8, 8)), logic.predict_config())
    line = logic.message(caught.value)
    assert line.startswith("error: ") and "not a model file of unet_tf" in line and "\n" not in line
    with pytest.raises(logic.JobError, match="^error: ZeroDivisionError: "):
        model_worker.run("operator:truediv", 1, 0)
    assert model_worker.run("operator:add", 2, 3) == 5  # the child survived both


def test_progress_comes_back_and_cancel_stops_the_job(model_worker):
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 5:
            threading.Thread(target=model_worker.cancel).start()  # as the Cancel button: another thread

    steps = model_worker.run("napari_helpers:count_until_stopped", progress=progress)
    assert 5 <= steps < 1000 and seen[:5] == [1, 2, 3, 4, 5]
    assert model_worker.run("napari_helpers:count_until_stopped", limit=0.05) > 0  # the next job is not cancelled


def test_the_child_stops_when_the_last_user_detaches(model_worker):
    model_worker.attach()
    model_worker.attach()
    model_worker.run("os:getpid")
    model_worker.detach()
    assert model_worker.alive
    model_worker.detach()
    assert not model_worker.alive and model_worker.pid is None
