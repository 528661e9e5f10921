"""The one exception type for user mistakes (bad files, flags, values)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
from pathlib import Path
from typing import Iterator, TextIO


class UserInputError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message names the file or flag and what is wrong with it; the command
    line entry points print it as ``error: <message>`` and exit with status 2.
    """


@dataclasses.dataclass
class Notes:
    """The notes of one run: kind -> (count, first example); prints to ``stream`` (None: ``sys.stderr``)."""

    stream: TextIO | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)

    def say(self, kind: str, example: str | Path | None = None) -> None:
        """Count one note of ``kind``; print it (with ``example``) the first time only."""
        first = kind not in self.counts
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if first:
            self.examples[kind] = "" if example is None else str(example)
            print(note_line(kind, self.examples[kind]), file=self.stream or sys.stderr)

    def summary(self) -> list[str]:
        """One line per kind said more than once: ``note: <kind>: <n> files, e.g. <example>``."""
        return [note_line(kind, self.examples[kind], n) for kind, n in self.counts.items() if n > 1]


def note_line(kind: str, example: str = "", count: int = 1) -> str:
    """``note: <kind>, e.g. <example>``; with ``count`` > 1 ``note: <kind>: <count> files, e.g. <example>``."""
    where = f"e.g. {example}" if example else ""
    if count > 1:
        return f"note: {kind}: {count} files" + (f", {where}" if where else "")
    return f"note: {kind}" + (f", {where}" if where else "")


_CURRENT: contextvars.ContextVar[Notes | None] = contextvars.ContextVar("unet_tf_notes", default=None)


# Outside any run: each kind once per process (keyed on the kind).
_OUTSIDE_RUNS = Notes()


def say_note(kind: str, example: str | Path | None = None) -> None:
    """Say a note of fixed text ``kind`` about ``example`` (a file, a name) in the current run."""
    (_CURRENT.get() or _OUTSIDE_RUNS).say(kind, example)


@contextlib.contextmanager
def note_run(stream: TextIO | None = None) -> Iterator[Notes]:
    """A run whose notes are said once each; prints the summary lines when the block ends without error.

    Inside an active run this joins it (the outer run prints the summary).
    Usable as a decorator: ``@note_run()``.
    """
    current = _CURRENT.get()
    if current is not None:
        yield current
        return
    notes = Notes(stream)
    token = _CURRENT.set(notes)
    try:
        yield notes
    finally:
        _CURRENT.reset(token)
    for line in notes.summary():
        print(line, file=notes.stream or sys.stderr)


@contextlib.contextmanager
def quiet_run() -> Iterator[Notes]:
    """A run as the user reads it: notes said once with a count (:func:`note_run`) and TensorFlow's
    native log lines hidden (:func:`unet_tf.runtime.hide_native_lines`). Usable as ``@quiet_run()``."""
    from unet_tf.runtime import hide_native_lines

    with note_run() as notes, hide_native_lines():
        yield notes


__all__ = ["Notes", "note_line", "say_note", "note_run", "quiet_run"]
