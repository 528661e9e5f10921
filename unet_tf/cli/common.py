"""What every command line shares: one-line errors and comma lists."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from unet_tf.errors import UserInputError, note_run


def run_main(body: Callable[[], int | None]) -> int:
    """Run ``body``; a user mistake prints one line ``error: ...`` and returns 2.

    Bodies call :func:`unet_tf.runtime.import_tensorflow` before their
    heavy imports, after checking what can be checked without TensorFlow.
    The command is one run of notes (:mod:`unet_tf.errors`): each said once,
    with a count at the end.
    """
    try:
        with note_run():
            return int(body() or 0)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def int_list(text: str) -> tuple[int, ...]:
    """``5,10,25`` -> (5, 10, 25); a bad list is an argparse error (one line, status 2)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'")
    return values


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())
