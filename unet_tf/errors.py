"""What the library tells the user: :class:`UserInputError` for mistakes, notes for facts worth knowing.

Both speak the library's words: a parameter is named in backticks as a notebook
user writes it, a field of :class:`unet_tf.config.RunConfig` as `train.lr` or
`data.patch_size`, a function argument as `tile`. The command lines print the
same text with each name replaced by its flag (`train.lr` -> --lr:
:func:`unet_tf.cli.common.flag_words`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
from pathlib import Path
from typing import Callable, Iterator, TextIO


class UserInputError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message names the file or parameter (in backticks, see the module
    docstring) and what is wrong with it; the command line entry points print
    it as ``error: <message>`` with flags for parameters and exit with status 2.
    """


@dataclasses.dataclass
class Notes:
    """The notes of one run: kind -> (count, first example); prints to ``stream`` (None: ``sys.stderr``)."""

    stream: TextIO | None = None
    words: Callable[[str], str] = str  # how a line reaches the reader (the CLI puts flags for parameters)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)

    def say(self, kind: str, example: str | Path | None = None) -> None:
        """Count one note of ``kind``; print it (with ``example``) the first time only."""
        first = kind not in self.counts
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if first:
            self.examples[kind] = "" if example is None else str(example)
            self.print(note_line(kind, self.examples[kind]))

    def print(self, line: str) -> None:
        print(self.words(line), file=self.stream or sys.stderr)

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
def note_run(stream: TextIO | None = None, words: Callable[[str], str] = str) -> Iterator[Notes]:
    """A run whose notes are said once each; prints the summary lines when the block ends without error.

    Inside an active run this joins it (the outer run prints the summary).
    ``words`` rewrites each printed line (the command lines: parameters -> flags).
    Usable as a decorator: ``@note_run()``.
    """
    current = _CURRENT.get()
    if current is not None:
        yield current
        return
    notes = Notes(stream, words)
    token = _CURRENT.set(notes)
    try:
        yield notes
    finally:
        _CURRENT.reset(token)
    for line in notes.summary():
        notes.print(line)
