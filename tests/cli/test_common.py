"""The command lines speak flags where the library names parameters: one table, checked against the parsers."""

from __future__ import annotations

from unet_tf.cli import app, export, predict, train
from unet_tf.cli.common import PARAMETER_FLAGS, flag_words, run_main
from unet_tf.errors import UserInputError, say_note


def _options() -> set[str]:
    found = set()
    for module in (train, predict, export, app):
        for action in module.build_parser()._actions:
            found.update(action.option_strings)
    return found


def test_every_flag_of_the_table_is_a_real_option():
    assert set(PARAMETER_FLAGS.values()) - _options() == set()


def test_flag_words_replaces_known_parameters_only():
    text = "try a smaller `train.lr` (now 0.5); `tile` 100 is not a multiple of 16; `not.a.param` stays; train.lr too"
    assert flag_words(text) == (
        "try a smaller --lr (now 0.5); --tile 100 is not a multiple of 16; `not.a.param` stays; train.lr too"
    )


def test_run_main_prints_errors_and_notes_in_flag_words(capsys):
    def body():
        say_note("`predict.pixel_size` is not set; sizes are in px", "a.tif")
        raise UserInputError("a.tif: `data.patch_size` 100 is not divisible by 16")

    assert run_main(body) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "note: --pixel-size is not set; sizes are in px, e.g. a.tif",
        "error: a.tif: --patch-size 100 is not divisible by 16",
    ]


def test_say_prints_library_progress_lines_in_flag_words(capsys):
    from unet_tf.cli.common import say

    say("a.tif: no pixel size in the file; give `predict.pixel_size` for physical units")
    assert capsys.readouterr().out == "a.tif: no pixel size in the file; give --pixel-size for physical units\n"
