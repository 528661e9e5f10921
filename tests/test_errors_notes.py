"""Notes are said once per run, with a count at the end; predict_files is one such run."""

import os

import cv2
import numpy as np
import pytest

from unet_tf.config import PredictConfig
from unet_tf.data.layouts import Sample
from unet_tf.errors import Notes, note_line, note_run, say_note
from unet_tf.models.file import ModelInfo
from unet_tf.prediction.files import predict_files

NATIVE = b"E0000 00:00:1700000000.123456   12 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512.\n"


def test_note_lines():
    assert note_line("kind") == "note: kind"
    assert note_line("kind", "a.png") == "note: kind, e.g. a.png"
    assert note_line("kind", "a.png", 55) == "note: kind: 55 files, e.g. a.png"


def test_notes_count_and_summarize(capsys):
    notes = Notes()
    for name in ("a.png", "b.png", "c.png"):
        notes.say("colour", name)
    notes.say("alone", "x.tif")
    assert capsys.readouterr().err.splitlines() == ["note: colour, e.g. a.png", "note: alone, e.g. x.tif"]
    assert notes.counts == {"colour": 3, "alone": 1}
    assert notes.summary() == ["note: colour: 3 files, e.g. a.png"]  # a kind said once needs no summary


def test_nested_runs_add_to_the_outer_one_and_failed_runs_print_no_summary(capsys):
    with note_run() as outer:
        say_note("k", "a")
        with note_run() as inner:
            assert inner is outer
            say_note("k", "b")
        assert capsys.readouterr().err.splitlines() == ["note: k, e.g. a"]  # no summary from the inner block
    assert capsys.readouterr().err.splitlines() == ["note: k: 2 files, e.g. a"]
    with pytest.raises(RuntimeError), note_run():
        say_note("k", "c")
        say_note("k", "d")
        raise RuntimeError
    assert capsys.readouterr().err.splitlines() == ["note: k, e.g. c"]


class NoisyModel:
    """A stand-in model (an object with ``.info``, callable on batches) that logs like TensorFlow's C++."""

    info = ModelInfo((0, 255), ("background", "cell"), patch_size=32, size_divisor=4)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        os.write(2, NATIVE)
        return np.full(batch.shape[:3] + (1,), 0.25, np.float32)


def test_predict_files_says_each_note_once_and_hides_native_lines(tmp_path, capfd):
    """Five colour PNGs: one colour note and one summary with the count 5 (was: five notes); the model's
    native log lines never reach stderr (were: one per batch)."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"c{i}.png"), rng.integers(0, 255, size=(24, 28, 3)).astype(np.uint8))
        samples.append(Sample(tmp_path / f"c{i}.png"))
    config = PredictConfig(tile=32, overlap=8, overlay=False)
    result = predict_files(NoisyModel(), samples, tmp_path / "out", config, log=lambda line: None)
    assert len(result["done"]) == 5
    kind = "note: colour images are reduced to gray (luminance; alpha ignored)"
    first = tmp_path / "c0.png"
    assert not_progress(capfd.readouterr().err) == [f"{kind}, e.g. {first}", f"{kind}: 5 files, e.g. {first}"]
    predict_files(NoisyModel(), samples[:1], tmp_path / "out2", config, log=lambda line: None)
    assert not_progress(capfd.readouterr().err) == [f"{kind}, e.g. {first}"]  # a second run says it again


def not_progress(err: str) -> list[str]:
    """The lines of ``err`` but the progress bars' final lines (``image 1/5 c0 tiles [###] 2/2``)."""
    return [line for line in err.splitlines() if not (line.startswith("image ") and " tiles [" in line)]
